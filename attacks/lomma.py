"""LOMMA — "Re-thinking Model Inversion Attacks Against Deep Neural Networks" (Nguyen et al.,
CVPR 2023), a plug-in for white-box GAN attacks, registered on GMI (``gmi+lomma``) and KEDMI
(``kedmi+lomma``).

It changes the base attack's identity term only (``identity_loss``), in two ways:

1. **Logit maximisation with a feature regulariser** (§4.1, ``L_logit``): the loss of an image
   x for identity k is −ℓ_k(x) (the logit, not the cross-entropy) plus
   λ_reg · mean_d (f_T(x) − p_reg)², where f_T is the target's penultimate feature and p_reg
   the mean target feature of up to 5,000 aux images (``get_act_reg``; λ_reg = 1).
2. **Model augmentation** (§4.2): the logit loss is averaged over the target and surrogate
   classifiers distilled from it on the aux split (``priors/surrogates.py``); the regulariser
   uses the target alone (``iden_loss``).

The base attack's prior, prior term, optimiser and λ are unchanged: ``Prior + λ · Iden``
(``recovery.py``). The surrogates are a target-dependent prior, cached; their distillation
queries (one forward query per aux image) are booked under ``prepare``.

Remaining deviations from the official code:

- Surrogates start from random weights (the public code fine-tunes ImageNet-pretrained
  EfficientNets; no weights download here), and the CPU presets use ``cnn-<d>`` surrogates.
- Distillation samples batches with replacement and keeps the learning rate constant (the public
  StepLR of 20 epochs never fires within its 20 epochs).
- The base attack keeps its own iteration count (GMI 1,500, KEDMI 2,400), so that LOMMA and
  its base attack are compared at one budget; the public LOMMA configs use 2,400 for both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

import torch
from torch import nn

from mibench.access import TargetView
from mibench.attack import AttackContext, AttackSpec
from mibench.attacks.gmi import GMI, GMIConfig
from mibench.attacks.kedmi import KEDMI, KEDMIConfig
from mibench.attacks.losses import logit_loss
from mibench.attacks.priors.cached import cached_module
from mibench.attacks.priors.pseudo_labels import target_outputs
from mibench.attacks.priors.surrogates import EFFICIENTNETS, distil, make_surrogate
from mibench.config import Config, param
from mibench.errors import ConfigError
from mibench.registry import ATTACKS

SURROGATE_FIELDS = ("surrogates", "surrogate_width", "kd_epochs", "kd_lr", "kd_momentum",
                    "kd_weight_decay", "kd_batch_size", "kd_temperature")
PRESETS: Mapping[str, Mapping[str, Any]] = {
    "smoke": {"surrogates": ("cnn-2",), "surrogate_width": 0.25, "kd_epochs": 2.0},
    "mini": {"surrogates": ("cnn-3", "cnn-4", "cnn-5"), "surrogate_width": 0.5,
             "kd_epochs": 10.0},
}


@dataclass
class LOMMAConfig(Config):
    """LOMMA's fields (``config/celeba/training_augmodel``, ``attacking/celeba.json``); the
    surrogate fields (:data:`SURROGATE_FIELDS`) are the surrogates' cache key."""

    surrogates: tuple[str, ...] = param(EFFICIENTNETS, "surrogate classifiers distilled from "
                                        "the target (efficientnet_b0|b1|b2 or cnn-<stages>)")
    surrogate_width: float = param(1.0, "channel multiplier of cnn-<d> surrogates (ours)", gt=0)
    kd_epochs: float = param(20.0, "distillation passes over the aux split", gt=0)
    kd_lr: float = param(0.01, "distillation SGD learning rate", gt=0)
    kd_momentum: float = param(0.9, "distillation SGD momentum", ge=0, lt=1)
    kd_weight_decay: float = param(1e-4, "distillation weight decay", ge=0)
    kd_batch_size: int = param(64, "distillation batch size", ge=1)
    kd_temperature: float = param(1.0, "distillation temperature τ", gt=0)
    reg_weight: float = param(1.0, "λ_reg of the feature regulariser", ge=0)
    reg_samples: int = param(5000, "aux images whose mean target feature is p_reg", ge=1)


def _presets(base: type[Config]) -> dict[str, dict[str, Any]]:
    return {name: {**base.presets.get(name, {}), **PRESETS.get(name, {})}
            for name in set(base.presets) | set(PRESETS)}


class LOMMA:
    """The plug-in, mixed in before a base attack class that calls ``identity_loss``."""

    config: Any

    def prepare(self, ctx: AttackContext) -> None:
        super().prepare(ctx)  # type: ignore[misc]
        target, cfg = ctx.target, self.config
        if target is None:
            raise ConfigError("LOMMA distils surrogates from the target: it needs the target "
                              "view in the attack context")
        images = ctx.aux.images
        logits, features = target_outputs(target, images)
        self.anchor = features[:cfg.reg_samples].mean(0).to(ctx.device)

        def make() -> nn.ModuleList:
            return nn.ModuleList(make_surrogate(name, target.num_classes, cfg.surrogate_width)
                                 for name in cfg.surrogates)

        def train(models: nn.Module) -> None:
            for i, model in enumerate(models):
                distil(model, images.to(ctx.device), logits, ctx, epochs=cfg.kd_epochs,
                       batch_size=cfg.kd_batch_size, lr=cfg.kd_lr, momentum=cfg.kd_momentum,
                       weight_decay=cfg.kd_weight_decay, temperature=cfg.kd_temperature,
                       seed_offset=i)

        settings = {name: getattr(cfg, name) for name in SURROGATE_FIELDS}
        self.surrogates = cached_module(ctx, "prior-lomma-surrogates", settings, make,
                                        train).requires_grad_(False)

    def identity_loss(self, target: TargetView, images: torch.Tensor,
                      labels: torch.Tensor) -> torch.Tensor:
        """Per sample: mean over target and surrogates of −ℓ_k, plus λ_reg · the target
        feature's mean squared distance to p_reg (``iden_loss`` with ``logit_loss``)."""
        logits, features = target(images)
        loss = logit_loss(logits, labels)
        for model in self.surrogates:
            loss = loss + logit_loss(model(images.to(self.anchor.device)), labels)
        regulariser = (features.float() - self.anchor).pow(2).mean(1)
        return loss / (1 + len(self.surrogates)) + self.config.reg_weight * regulariser


@dataclass
class GMILOMMAConfig(LOMMAConfig, GMIConfig):
    """GMI with LOMMA: GMI's prior and update, LOMMA's identity term."""

    presets: ClassVar[Mapping[str, Mapping[str, Any]]] = _presets(GMIConfig)


@dataclass
class KEDMILOMMAConfig(LOMMAConfig, KEDMIConfig):
    """KEDMI with LOMMA: KEDMI's prior and distributional recovery, LOMMA's identity term."""

    presets: ClassVar[Mapping[str, Mapping[str, Any]]] = _presets(KEDMIConfig)


def _spec(base: type, title: str) -> AttackSpec:
    spec = base.spec
    return AttackSpec(name=f"{spec.name}+lomma", title=f"LOMMA on {title}",
                      paper="Nguyen et al., CVPR", year=2023, access="whitebox",
                      prior=f"{spec.prior} + distilled surrogates", target_dependent_prior=True)


@ATTACKS.register("gmi+lomma")
class GMILOMMA(LOMMA, GMI):
    """GMI with the logit loss, the feature regulariser and augmented surrogates."""

    spec = _spec(GMI, "GMI")
    Config: ClassVar[type[Config]] = GMILOMMAConfig


@ATTACKS.register("kedmi+lomma")
class KEDMILOMMA(LOMMA, KEDMI):
    """KEDMI with the logit loss, the feature regulariser and augmented surrogates."""

    spec = _spec(KEDMI, "KEDMI")
    Config: ClassVar[type[Config]] = KEDMILOMMAConfig
