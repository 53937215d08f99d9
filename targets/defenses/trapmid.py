"""Trap-MID — Liu et al., "Trap-MID: Trapdoor-based Defense against Model Inversion Attacks",
NeurIPS 2024, §3: a trapdoor per class, x' = (1 − α)·x + α·t_ŷ, trained so that the model
predicts ŷ on x' (β-weighted trapdoor loss); the triggers follow the gradient of that loss and
of a discriminator's "natural image" score (so that attacks fall into the trapdoors).

Ours: a quarter of each batch is poisoned with random trapdoor labels and classified together
with the clean batch (one forward); the triggers take a signed step of size ``trigger_step``
per optimiser step; the discriminator is a two-layer convnet trained by the same optimiser
(on detached images, while the triggers see it through detached weights).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from mibench.config import Config, param
from mibench.registry import DEFENSES
from mibench.targets.defenses.base import Defense, DefenseObjective

DISCRIMINATOR_CHANNELS = 16


@dataclass
class TrapMIDConfig(Config):
    alpha: float = param(0.02, "blend weight α of the trigger", gt=0.0, lt=1.0, source="paper")
    beta: float = param(0.2, "weight β of the trapdoor loss", ge=0.0, source="paper")
    trigger_step: float = param(1e-2, "trigger update step", gt=0.0, source="paper")
    poisoned: float = param(0.25, "fraction of each batch blended with a trigger", gt=0.0,
                            le=1.0, source="ours")
    naturalness: float = param(1.0, "weight of the discriminator term of the trigger loss",
                               ge=0.0, source="ours")


def blend(images: Tensor, triggers: Tensor, alpha: float) -> Tensor:
    return (1.0 - alpha) * images + alpha * triggers


def discriminator() -> nn.Module:
    c = DISCRIMINATOR_CHANNELS
    return nn.Sequential(nn.Conv2d(3, c, 4, 2, 1), nn.LeakyReLU(0.2),
                         nn.Conv2d(c, 2 * c, 4, 2, 1), nn.LeakyReLU(0.2),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * c, 1))


class TrapMIDObjective(DefenseObjective):
    def __init__(self, base: nn.Module, config: TrapMIDConfig, num_classes: int,
                 resolution: int) -> None:
        super().__init__(base)
        self.config, self.num_classes = config, num_classes
        self.register_buffer("triggers", torch.rand(num_classes, 3, resolution, resolution))
        self.discriminator = discriminator()

    def _update_triggers(self) -> None:
        grad = self.triggers.grad
        if grad is not None:
            with torch.no_grad():
                self.triggers.sub_(self.config.trigger_step * grad.sign()).clamp_(0.0, 1.0)
            self.triggers.grad = None

    def forward(self, target: nn.Module, images: Tensor, labels: Tensor) -> Tensor:
        if not self.training:
            return self.base(target, images, labels)
        self._update_triggers()
        cfg, n = self.config, max(1, int(round(self.config.poisoned * len(images))))
        trap_labels = torch.randint(self.num_classes, (n,), device=images.device)
        self.triggers.requires_grad_(True)
        size = images.shape[-2:]
        triggers = F.interpolate(self.triggers, size=size, mode="bilinear",
                                 align_corners=False) if self.triggers.shape[-2:] != size \
            else self.triggers
        poisoned = blend(images[:n], triggers[trap_labels], cfg.alpha)
        both = self.base(target, torch.cat([images, poisoned]), torch.cat([labels, trap_labels]),
                         reduction="none")
        clean, trap = both[:len(images)].mean(), both[len(images):].mean()
        frozen = {k: v.detach() for k, v in self.discriminator.named_parameters()}
        natural = F.softplus(-functional_call(self.discriminator, frozen, (poisoned,))).mean()
        real = F.softplus(-self.discriminator(images)).mean()
        fake = F.softplus(self.discriminator(poisoned.detach())).mean()
        return clean + cfg.beta * trap + cfg.naturalness * natural + real + fake


@DEFENSES.register("trapmid")
class TrapMID(Defense):
    name = "trapmid"
    paper = "Liu et al., NeurIPS 2024: per-class trapdoor triggers blended in, trapdoor loss"
    Config = TrapMIDConfig
    strength = "beta"
    sweep = (0.1, 0.2, 0.5)

    def objective(self, base: nn.Module, target: nn.Module, num_classes: int) -> nn.Module:
        return TrapMIDObjective(base, self.config, num_classes, target.resolution)
