"""MID — Wang et al., "Improving Robustness to Model Inversion Attacks via Mutual Information
Regularization", AAAI 2021, §4 (variational bound of I(X; Ŷ)).

A variational information bottleneck between the backbone's features and the classifier: a
linear layer predicts (μ, s), σ = softplus(s − 5), training samples z = μ + σ·ε and adds
β·KL(N(μ, σ²) ‖ N(0, I)) (in bits, as the official code divides by ln 2) to the loss;
evaluation uses z = μ. The bottleneck keeps the backbone's feature size (the official code
halves it; ours keeps the head and the open-set gallery unchanged).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mibench.config import Config, param
from mibench.registry import DEFENSES
from mibench.targets.architectures import Backbone
from mibench.targets.defenses.base import Defense, DefenseObjective


@dataclass
class MIDConfig(Config):
    beta: float = param(0.003, "weight β of the KL term (the paper sweeps 0.003–0.03)", ge=0.0,
                        source="paper")
    std_shift: float = param(5.0, "σ = softplus(s − shift)", source="code")


def gaussian_kl(mu: Tensor, std: Tensor) -> Tensor:
    """Mean over the batch of KL(N(μ, σ²) ‖ N(0, I)) in bits."""
    nats = 0.5 * (mu.pow(2) + std.pow(2) - 2.0 * std.clamp_min(1e-12).log() - 1.0).sum(1)
    return nats.mean() / math.log(2.0)


class Bottleneck(Backbone):
    """``inner`` backbone → (μ, σ) → z; the closed-set head, if any, moves here as ``head``."""

    head_key = "head"

    def __init__(self, inner: Backbone, std_shift: float) -> None:
        super().__init__(inner.feature_dim, inner.num_classes)
        head = getattr(inner, inner.head_key) if inner.num_classes is not None else None
        if head is not None:
            delattr(inner, inner.head_key)
            inner.num_classes = None
        self.inner = inner
        self.st_layer = nn.Linear(inner.feature_dim, 2 * inner.feature_dim)
        self.std_shift = std_shift
        self.kl = torch.zeros(())
        if head is not None:
            self.head = head

    def embed(self, x: Tensor) -> Tensor:
        mu, raw = self.st_layer(self.inner.embed(x)).chunk(2, dim=1)
        if not self.training:
            return mu
        std = F.softplus(raw - self.std_shift)
        self.kl = gaussian_kl(mu, std)
        return mu + std * torch.randn_like(std)


class MIDObjective(DefenseObjective):
    def __init__(self, base: nn.Module, beta: float) -> None:
        super().__init__(base)
        self.beta = beta

    def forward(self, target: nn.Module, images: Tensor, labels: Tensor) -> Tensor:
        loss = self.base(target, images, labels)
        bottleneck = target.backbone
        return loss + self.beta * bottleneck.kl


@DEFENSES.register("mid")
class MID(Defense):
    name = "mid"
    paper = "Wang et al., AAAI 2021: information bottleneck head, CE + β·KL"
    Config = MIDConfig
    strength = "beta"
    sweep = (0.003, 0.01, 0.03)

    def modify(self, backbone: Backbone) -> Backbone:
        return Bottleneck(backbone, self.config.std_shift)

    def objective(self, base: nn.Module, target: nn.Module, num_classes: int) -> nn.Module:
        return MIDObjective(base, self.config.beta)
