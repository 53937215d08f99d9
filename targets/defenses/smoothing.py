"""LS / NegLS — Struppek et al., "Be Careful What You Smooth For: Label Smoothing Can Be a
Privacy Shield but Also a Catalyst for Model Inversion Attacks", ICLR 2024, §3.

Targets y = (1 − α)·onehot + α/C: positive α increases leakage, negative α (NegLS, −0.05)
reduces it; the off-target mass α/C is then negative and the targets still sum to 1. The
official warm-up: α = 0 for the first half of training, then a linear ramp to α (PPA PR #14
notes it was once never applied).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mibench.config import Config, param
from mibench.errors import ConfigError
from mibench.registry import DEFENSES
from mibench.targets.defenses.base import Defense, DefenseObjective


@dataclass
class LSConfig(Config):
    alpha: float = param(0.1, "smoothing factor α (> 0: label smoothing)", gt=-1.0, lt=1.0,
                         source="paper")
    warmup: float = param(0.5, "fraction of training with α = 0 before the linear ramp",
                          ge=0.0, lt=1.0, source="code")


@dataclass
class NegLSConfig(LSConfig):
    alpha: float = param(-0.05, "smoothing factor α (< 0: negative label smoothing)", gt=-1.0,
                         lt=1.0, source="paper")


def smoothed_targets(labels: Tensor, num_classes: int, alpha: float) -> Tensor:
    """(1 − α)·onehot + α/C, rows summing to 1 (off-target entries negative when α < 0)."""
    onehot = F.one_hot(labels, num_classes).float()
    return (1.0 - alpha) * onehot + alpha / num_classes


def ramped_alpha(alpha: float, progress: float, warmup: float) -> float:
    """0 until ``warmup``, then linear to ``alpha`` at the end of training."""
    if progress < warmup:
        return 0.0
    return alpha * (progress - warmup) / (1.0 - warmup)


class SmoothingObjective(DefenseObjective):
    def __init__(self, base: nn.Module, alpha: float, warmup: float) -> None:
        super().__init__(base)
        if not hasattr(base, "logits"):
            raise ConfigError("label smoothing needs a classification loss (softmax, arcface, "
                              "cosface), not the triplet loss")
        self.alpha, self.warmup = alpha, warmup

    def forward(self, target: nn.Module, images: Tensor, labels: Tensor) -> Tensor:
        logits = self.base.logits(target, images, labels)
        alpha = ramped_alpha(self.alpha, self.progress, self.warmup)
        self.tick()
        soft = smoothed_targets(labels, logits.shape[1], alpha).to(logits.dtype)
        return -(soft * torch.log_softmax(logits, dim=1)).sum(1).mean()


class _Smoothing(Defense):
    strength = "alpha"

    def objective(self, base: nn.Module, target: nn.Module, num_classes: int) -> nn.Module:
        return SmoothingObjective(base, self.config.alpha, self.config.warmup)


@DEFENSES.register("ls")
class LabelSmoothing(_Smoothing):
    name = "ls"
    paper = "Struppek et al., ICLR 2024: positive label smoothing (increases leakage)"
    Config = LSConfig
    sweep = (0.05, 0.1, 0.2)


@DEFENSES.register("negls")
class NegativeLabelSmoothing(_Smoothing):
    name = "negls"
    paper = "Struppek et al., ICLR 2024: negative label smoothing α = −0.05"
    Config = NegLSConfig
    sweep = (-0.01, -0.05, -0.1)
