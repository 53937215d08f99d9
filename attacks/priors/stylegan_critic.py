"""StyleGAN2's residual discriminator (Karras et al., CVPR 2020, §4 and Fig. 7, configs E/F).

Written from the paper's description, for the ``paper`` preset of the StyleGAN prior
(``priors/stylegan.py``, ``critic="resnet"``):

- FromRGB: a 1×1 convolution from the image to the first block's channels, only at the input
  resolution (the "resnet" D has no further image inputs);
- one block per resolution from the input side down to 8 px: two 3×3 convolutions (the second
  one down-samples ×2 and maps to the next resolution's channels) plus a 1×1 skip convolution
  of the down-sampled input, joined as (skip + main)·1/√2;
- the 4×4 epilogue: the minibatch standard-deviation layer (groups of 4, one feature map), a
  3×3 convolution, a fully connected layer and the output layer to one score per image.

Channels follow the generator's rule min(channel_max, channel_base / side) (the block at side
s has ch(s) channels in and ch(s/2) out). Every layer uses the equalised learning rate and
leaky ReLU (0.2, gain √2) as in StyleGAN2. Down-sampling is a 2×2 average pool after the 3×3
convolution (and before the skip's 1×1) instead of StyleGAN2's FIR [1, 3, 3, 1] low-pass filter
— a documented simplification. Images come in [0, 1] (mibench's range) and are mapped to
[−1, 1] first, the range StyleGAN2's discriminator sees.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mibench.attacks.priors.equalised import EqualConv2d, EqualLinear, leaky_relu


def group_size(batch: int, wanted: int) -> int:
    """The largest group size ≤ ``wanted`` that divides ``batch`` (StyleGAN2 needs the batch to
    split into equal groups)."""
    return next(g for g in range(min(wanted, batch), 0, -1) if batch % g == 0)


def minibatch_stddev(x: torch.Tensor, group: int = 4, features: int = 1) -> torch.Tensor:
    """Append ``features`` maps holding the standard deviation of each feature group over the
    samples of a minibatch group (averaged over channels and pixels), StyleGAN2's
    ``MinibatchStdLayer``. Sample i belongs to group i mod (N / group). Computed in fp32."""
    n, c, h, w = x.shape
    g = group_size(n, group)
    y = x.float().reshape(g, n // g, features, c // features, h, w)
    y = (y - y.mean(dim=0)).square().mean(dim=0).add(1e-8).sqrt()
    y = y.mean(dim=(2, 3, 4)).reshape(n // g, features, 1, 1).repeat(g, 1, h, w)
    return torch.cat([x, y.to(x.dtype)], dim=1)


class ResidualBlock(nn.Module):
    """3×3 conv → 3×3 conv with ×2 down-sampling, plus a down-sampled 1×1 skip; ×1/√2 join."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv0 = EqualConv2d(c_in, c_in, 3)
        self.conv1 = EqualConv2d(c_in, c_out, 3)
        self.skip = EqualConv2d(c_in, c_out, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = self.skip(F.avg_pool2d(x, 2))
        x = leaky_relu(self.conv0(x))
        x = F.avg_pool2d(leaky_relu(self.conv1(x)), 2)
        return (skip + x) * math.sqrt(0.5)


class ResidualCritic(nn.Module):
    """Image in [0, 1] at ``resolution`` → one unbounded realism score per image (logistic
    loss). ``mbstd_group`` is the minibatch-stddev group size (4 in StyleGAN2)."""

    def __init__(self, resolution: int = 256, channel_base: int = 32768,
                 channel_max: int = 512, mbstd_group: int = 4) -> None:
        super().__init__()
        levels = math.log2(resolution)
        if resolution < 8 or not levels.is_integer():
            raise ValueError(f"residual critic resolution must be a power of two ≥ 8, got "
                             f"{resolution}")

        def ch(side: int) -> int:
            return max(1, min(channel_max, channel_base // side))

        sides = [2 ** i for i in range(int(levels), 2, -1)]          # resolution … 8
        self.resolution, self.mbstd_group = resolution, mbstd_group
        self.from_rgb = EqualConv2d(3, ch(resolution), 1)
        self.blocks = nn.Sequential(*[ResidualBlock(ch(s), ch(s // 2)) for s in sides])
        c = ch(4)
        self.conv = EqualConv2d(c + 1, c, 3)
        self.fc = EqualLinear(c * 16, c, activate=True)
        self.out = EqualLinear(c, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = leaky_relu(self.from_rgb(images * 2 - 1))
        x = self.blocks(x)
        x = leaky_relu(self.conv(minibatch_stddev(x, self.mbstd_group)))
        return self.out(self.fc(x.flatten(1))).flatten()
