"""Equalised-learning-rate layers of StyleGAN (Karras et al., ICLR 2018 §4.1; StyleGAN2):
weights drawn from N(0, 1) and scaled by He's constant 1/√fan_in at run time, so Adam's
per-parameter step sizes are the same for every layer. Shared by the generator
(``priors/stylegan.py``) and the residual critic (``priors/stylegan_critic.py``)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def leaky_relu(x: torch.Tensor) -> torch.Tensor:
    """StyleGAN's activation: leaky ReLU (slope 0.2) with gain √2."""
    return F.leaky_relu(x, 0.2) * math.sqrt(2)


class EqualLinear(nn.Module):
    """Linear layer with equalised learning rate (weights scaled at run time)."""

    def __init__(self, c_in: int, c_out: int, bias_init: float = 0.0,
                 lr_multiplier: float = 1.0, activate: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(c_out, c_in) / lr_multiplier)
        self.bias = nn.Parameter(torch.full((c_out,), bias_init / lr_multiplier))
        self.scale, self.lr_multiplier, self.activate = (lr_multiplier / math.sqrt(c_in),
                                                         lr_multiplier, activate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.linear(x, self.weight * self.scale, self.bias * self.lr_multiplier)
        return leaky_relu(x) if self.activate else x


class EqualConv2d(nn.Module):
    """Convolution ("same" padding, stride 1) with equalised learning rate; linear (the caller
    applies the activation)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, bias: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(c_out, c_in, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(c_out)) if bias else None
        self.scale = 1 / math.sqrt(c_in * kernel * kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias,
                        padding=self.weight.shape[-1] // 2)
