"""Inception-ResNet-v1, the FaceNet embedding network, in the facenet-pytorch key layout.

Follows Szegedy et al., "Inception-v4, Inception-ResNet and the Impact of Residual Connections"
(2017), as used by FaceNet (Schroff et al., CVPR 2015) and released by ``timesler/facenet-pytorch``
(``models/inception_resnet_v1.py``): attribute names ``conv2d_1a … conv2d_4b, repeat_1,
mixed_6a, repeat_2, mixed_7a, repeat_3, block8, last_linear, last_bn`` and the classifier
``logits``; every conv unit is ``{conv, bn}`` with BatchNorm eps 1e-3; residual branches are
``branch0..`` (a single conv unit, or a ``Sequential`` of them) merged by a biased 1×1 ``conv2d``
and scaled (0.17 / 0.10 / 0.20). The stem shrinks its input ~32×, so inputs need ≥ 75 px
(:data:`MIN_RESOLUTION`); the published model uses 160 px.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from mibench.targets.architectures.base import Backbone, scaled

MIN_RESOLUTION = 75
BN_EPS = 1e-3

# A conv unit spec: (out_channels, kernel, stride, padding), kernel/padding may be (h, w).
Conv = tuple[int, int | tuple[int, int], int, int | tuple[int, int]]


class ConvUnit(nn.Module):
    """Conv (no bias) → BatchNorm → ReLU: facenet-pytorch's ``BasicConv2d`` keys ``conv, bn``."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int | tuple[int, int],
                 stride: int = 1, padding: int | tuple[int, int] = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, eps=BN_EPS)

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(self.bn(self.conv(x)))


def conv_branch(in_channels: int, specs: Sequence[Conv], width: float) -> tuple[nn.Module, int]:
    """One branch: a single unit, or a ``Sequential`` of units; returns it and its channels."""
    units: list[nn.Module] = []
    for out_channels, kernel, stride, padding in specs:
        out = scaled(out_channels, width)
        units.append(ConvUnit(in_channels, out, kernel, stride, padding))
        in_channels = out
    return (units[0] if len(units) == 1 else nn.Sequential(*units)), in_channels


class ResidualInception(nn.Module):
    """Block35 / Block17 / Block8: parallel branches → 1×1 ``conv2d`` → x + scale·out (→ ReLU)."""

    def __init__(self, channels: int, branches: Sequence[Sequence[Conv]], width: float,
                 scale: float, relu: bool = True) -> None:
        super().__init__()
        self.scale = scale
        self.relu = relu
        merged = 0
        for index, specs in enumerate(branches):
            branch, out = conv_branch(channels, specs, width)
            self.add_module(f"branch{index}", branch)
            merged += out
        self.num_branches = len(branches)
        self.conv2d = nn.Conv2d(merged, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        out = torch.cat([getattr(self, f"branch{i}")(x) for i in range(self.num_branches)], 1)
        out = x + self.scale * self.conv2d(out)
        return torch.relu(out) if self.relu else out


class Reduction(nn.Module):
    """Mixed_6a / Mixed_7a: conv branches plus a 3×3/2 max-pool branch, concatenated."""

    def __init__(self, in_channels: int, branches: Sequence[Sequence[Conv]], width: float) -> None:
        super().__init__()
        self.out_channels = in_channels
        for index, specs in enumerate(branches):
            branch, out = conv_branch(in_channels, specs, width)
            self.add_module(f"branch{index}", branch)
            self.out_channels += out
        self.add_module(f"branch{len(branches)}", nn.MaxPool2d(3, stride=2))
        self.num_branches = len(branches) + 1

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([getattr(self, f"branch{i}")(x) for i in range(self.num_branches)], 1)


BLOCK35: list[list[Conv]] = [[(32, 1, 1, 0)], [(32, 1, 1, 0), (32, 3, 1, 1)],
                             [(32, 1, 1, 0), (32, 3, 1, 1), (32, 3, 1, 1)]]
BLOCK17: list[list[Conv]] = [[(128, 1, 1, 0)],
                             [(128, 1, 1, 0), (128, (1, 7), 1, (0, 3)), (128, (7, 1), 1, (3, 0))]]
BLOCK8: list[list[Conv]] = [[(192, 1, 1, 0)],
                            [(192, 1, 1, 0), (192, (1, 3), 1, (0, 1)), (192, (3, 1), 1, (1, 0))]]
MIXED_6A: list[list[Conv]] = [[(384, 3, 2, 0)], [(192, 1, 1, 0), (192, 3, 1, 1), (256, 3, 2, 0)]]
MIXED_7A: list[list[Conv]] = [[(256, 1, 1, 0), (384, 3, 2, 0)], [(256, 1, 1, 0), (256, 3, 2, 0)],
                              [(256, 1, 1, 0), (256, 3, 1, 1), (256, 3, 2, 0)]]


class InceptionResnetV1(Backbone):
    """FaceNet's Inception-ResNet-v1 (5×Block35, 10×Block17, 5+1×Block8); ``width`` scales it."""

    head_key = "logits"

    def __init__(self, *, width: float = 1.0, feature_dim: int = 512,
                 num_classes: int | None = None, dropout: float = 0.6) -> None:
        super().__init__(feature_dim, num_classes)
        c = [scaled(n, width) for n in (32, 32, 64, 80, 192, 256)]
        self.conv2d_1a = ConvUnit(3, c[0], 3, 2)
        self.conv2d_2a = ConvUnit(c[0], c[1], 3, 1)
        self.conv2d_2b = ConvUnit(c[1], c[2], 3, 1, 1)
        self.maxpool_3a = nn.MaxPool2d(3, stride=2)
        self.conv2d_3b = ConvUnit(c[2], c[3], 1, 1)
        self.conv2d_4a = ConvUnit(c[3], c[4], 3, 1)
        self.conv2d_4b = ConvUnit(c[4], c[5], 3, 2)
        self.repeat_1 = nn.Sequential(*[ResidualInception(c[5], BLOCK35, width, 0.17)
                                        for _ in range(5)])
        self.mixed_6a = Reduction(c[5], MIXED_6A, width)
        channels_17 = self.mixed_6a.out_channels
        self.repeat_2 = nn.Sequential(*[ResidualInception(channels_17, BLOCK17, width, 0.10)
                                        for _ in range(10)])
        self.mixed_7a = Reduction(channels_17, MIXED_7A, width)
        channels_8 = self.mixed_7a.out_channels
        self.repeat_3 = nn.Sequential(*[ResidualInception(channels_8, BLOCK8, width, 0.20)
                                        for _ in range(5)])
        self.block8 = ResidualInception(channels_8, BLOCK8, width, 1.0, relu=False)
        self.avgpool_1a = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.last_linear = nn.Linear(channels_8, feature_dim, bias=False)
        self.last_bn = nn.BatchNorm1d(feature_dim, eps=BN_EPS)
        self.add_head()

    def embed(self, x: Tensor) -> Tensor:
        if min(x.shape[-2:]) < MIN_RESOLUTION:
            raise ValueError(f"Inception-ResNet-v1 needs inputs of at least {MIN_RESOLUTION} px, "
                             f"got {tuple(x.shape[-2:])}")
        x = self.conv2d_2b(self.conv2d_2a(self.conv2d_1a(x)))
        x = self.conv2d_4b(self.conv2d_4a(self.conv2d_3b(self.maxpool_3a(x))))
        x = self.repeat_3(self.mixed_7a(self.repeat_2(self.mixed_6a(self.repeat_1(x)))))
        x = self.avgpool_1a(self.block8(x)).flatten(1)
        return self.last_bn(self.last_linear(self.dropout(x)))
