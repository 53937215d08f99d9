"""GMI's DCGAN generator and WGAN-GP critic (Zhang et al., CVPR 2020; attacks.md §1.2).

Generator: z → Linear(z, 8c·4·4) + BN + ReLU → up-blocks [ConvTranspose 5×5, stride 2, BN, ReLU]
halving the channels → ConvTranspose 5×5 to RGB → sigmoid, i.e. images in [0, 1]. With
``width=1`` and 64 px this is the published 512-256-128-64 generator; ``width`` scales the
channels and ``resolution`` (a power of two ≥ 16) sets the number of up-blocks.
Critic: Conv 5×5 s2 + LeakyReLU, then [Conv 5×5 s2, InstanceNorm(affine), LeakyReLU] blocks
doubling the channels, then a 4×4 conv to a scalar (InstanceNorm stands in for LayerNorm).
"""

from __future__ import annotations

import math
from contextlib import nullcontext

import torch
from torch import nn


def stride_levels(resolution: int) -> int:
    """Number of stride-2 stages between 4×4 and ``resolution``."""
    levels = math.log2(resolution / 4)
    if resolution < 16 or not levels.is_integer():
        raise ValueError(f"DCGAN resolution must be a power of two ≥ 16, got {resolution}")
    return int(levels)


class Generator(nn.Module):
    """z ∈ R^z_dim → image in [0, 1] at ``resolution``."""

    def __init__(self, z_dim: int = 100, resolution: int = 64, width: float = 1.0) -> None:
        super().__init__()
        levels = stride_levels(resolution)
        channels = [max(8, int(64 * width * 2 ** (levels - 1 - i))) for i in range(levels)]
        self.z_dim, self.resolution = z_dim, resolution
        self.project = nn.Sequential(nn.Linear(z_dim, channels[0] * 16, bias=False),
                                     nn.BatchNorm1d(channels[0] * 16), nn.ReLU())
        blocks: list[nn.Module] = []
        for c_in, c_out in zip(channels[:-1], channels[1:]):
            blocks += [nn.ConvTranspose2d(c_in, c_out, 5, 2, padding=2, output_padding=1,
                                          bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]
        blocks += [nn.ConvTranspose2d(channels[-1], 3, 5, 2, padding=2, output_padding=1),
                   nn.Sigmoid()]
        self.synthesis = nn.Sequential(*blocks)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.project(z).view(z.shape[0], -1, 4, 4)
        return self.synthesis(x)


class Critic(nn.Module):
    """WGAN-GP critic: image in [0, 1] → unbounded realism score."""

    def __init__(self, resolution: int = 64, width: float = 1.0) -> None:
        super().__init__()
        levels = stride_levels(resolution)
        channels = [max(8, int(64 * width * 2 ** i)) for i in range(levels)]
        layers: list[nn.Module] = [nn.Conv2d(3, channels[0], 5, 2, padding=2),
                                   nn.LeakyReLU(0.2)]
        for c_in, c_out in zip(channels[:-1], channels[1:]):
            layers += [nn.Conv2d(c_in, c_out, 5, 2, padding=2),
                       nn.InstanceNorm2d(c_out, affine=True), nn.LeakyReLU(0.2)]
        layers.append(nn.Conv2d(channels[-1], 1, 4))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten()


def gradient_penalty(critic: Critic, real: torch.Tensor, fake: torch.Tensor,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """WGAN-GP penalty E[(‖∇D(x̂)‖₂ − 1)²] on random interpolates x̂ (Gulrajani et al., 2017),
    always in float32: autocast is disabled for its double backward."""
    alpha = torch.rand(real.shape[0], 1, 1, 1, device=real.device, generator=generator)
    device_type = real.device.type
    fp32 = (torch.autocast(device_type, enabled=False)
            if torch.amp.is_autocast_available(device_type) else nullcontext())
    with fp32:
        mixed = (alpha * real.float() + (1 - alpha) * fake.float()).requires_grad_(True)
        grad, = torch.autograd.grad(critic(mixed).sum(), mixed, create_graph=True)
        return (grad.flatten(1).norm(dim=1) - 1).pow(2).mean()
