"""PLG-MI's conditional GAN (Yuan et al., AAAI 2023; attacks.md §4.2), after Miyato & Koyama's
cGAN with projection discriminator (ICLR 2018).

Generator: z → Linear → (16c)×4×4 → up-ResBlocks halving the channels down to c at the output
resolution, each with *categorical conditional BatchNorm* (the class picks the BN scale and
shift) → BN, ReLU, 1×1 conv to RGB, tanh. With c = 64 and 64 px this is the published
1024→512→256→128→64 generator. Discriminator: spectral-normed ResBlocks c → 16c with average-pool
downsampling, ReLU, global *sum* pooling, an SN linear to a scalar plus the projection
⟨SN-Embedding(y), h⟩. Both work on images in [−1, 1].
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm


def _levels(resolution: int) -> int:
    levels = math.log2(resolution / 4)
    if resolution < 8 or not levels.is_integer():
        raise ValueError(f"cGAN resolution must be a power of two ≥ 8, got {resolution}")
    return int(levels)


class ConditionalBatchNorm(nn.Module):
    """BatchNorm without affine parameters, then a per-class scale (init 1) and shift (init 0)."""

    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(channels, affine=False)
        self.scale = nn.Embedding(num_classes, channels)
        self.shift = nn.Embedding(num_classes, channels)
        nn.init.ones_(self.scale.weight)
        nn.init.zeros_(self.shift.weight)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.norm(x) * self.scale(y)[:, :, None, None] + self.shift(y)[:, :, None, None]


class UpBlock(nn.Module):
    """cBN, ReLU, ×2 bilinear, 3×3 conv, cBN, ReLU, 3×3 conv; shortcut ×2 bilinear + 1×1 conv."""

    def __init__(self, c_in: int, c_out: int, num_classes: int) -> None:
        super().__init__()
        self.bn1 = ConditionalBatchNorm(c_in, num_classes)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.bn2 = ConditionalBatchNorm(c_out, num_classes)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.shortcut = nn.Conv2d(c_in, c_out, 1)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        def up(h: torch.Tensor) -> torch.Tensor:
            return F.interpolate(h, scale_factor=2, mode="bilinear", align_corners=False)

        h = self.conv1(up(F.relu(self.bn1(x, y))))
        h = self.conv2(F.relu(self.bn2(h, y)))
        return h + self.shortcut(up(x))


class ConditionalGenerator(nn.Module):
    """(z, class) → image in [−1, 1] at ``resolution``."""

    def __init__(self, num_classes: int, z_dim: int = 128, resolution: int = 64,
                 width: int = 64) -> None:
        super().__init__()
        levels = _levels(resolution)
        channels = [width * 2 ** (levels - i) for i in range(levels + 1)]
        self.z_dim, self.num_classes, self.resolution = z_dim, num_classes, resolution
        self.project = nn.Linear(z_dim, channels[0] * 16)
        self.blocks = nn.ModuleList(UpBlock(a, b, num_classes)
                                    for a, b in zip(channels, channels[1:]))
        self.to_rgb = nn.Sequential(nn.BatchNorm2d(channels[-1]), nn.ReLU(),
                                    nn.Conv2d(channels[-1], 3, 1), nn.Tanh())

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.project(z).view(len(z), -1, 4, 4)
        for block in self.blocks:
            h = block(h, y)
        return self.to_rgb(h)


class DownBlock(nn.Module):
    """SN ResBlock with 2×2 average-pool downsampling; ``first`` is the "optimized" input block
    (no leading ReLU, pool before the shortcut conv)."""

    def __init__(self, c_in: int, c_out: int, first: bool) -> None:
        super().__init__()
        self.first = first
        self.conv1 = spectral_norm(nn.Conv2d(c_in, c_out, 3, padding=1))
        self.conv2 = spectral_norm(nn.Conv2d(c_out, c_out, 3, padding=1))
        self.shortcut = spectral_norm(nn.Conv2d(c_in, c_out, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x if self.first else F.relu(x)
        h = F.avg_pool2d(self.conv2(F.relu(self.conv1(h))), 2)
        skip = self.shortcut(F.avg_pool2d(x, 2)) if self.first else F.avg_pool2d(
            self.shortcut(x), 2)
        return h + skip


class ProjectionDiscriminator(nn.Module):
    """(image in [−1, 1], class) → unbounded realism score with a class projection term."""

    def __init__(self, num_classes: int, resolution: int = 64, width: int = 64) -> None:
        super().__init__()
        levels = _levels(resolution) + 1
        channels = [3] + [width * 2 ** i for i in range(levels)]
        self.blocks = nn.Sequential(*(DownBlock(a, b, first=i == 0) for i, (a, b)
                                      in enumerate(zip(channels, channels[1:]))))
        self.linear = spectral_norm(nn.Linear(channels[-1], 1))
        self.embed = spectral_norm(nn.Embedding(num_classes, channels[-1]))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.blocks(x)).sum(dim=(2, 3))
        return self.linear(h).squeeze(1) + (self.embed(y) * h).sum(dim=1)
