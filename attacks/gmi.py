"""GMI — "The Secret Revealer" (Zhang et al., CVPR 2020), attacks.md §1.

Prior: a DCGAN generator trained with WGAN-GP on the auxiliary split, independent of the target.
Attack: for each sample, optimise a latent z ∈ [−1, 1]^d to minimise
``−D(G(z)) + λ · CE(T(G(z)), y)`` with Nesterov-momentum SGD (lr 0.02, μ 0.9, λ 100, 1,500
iterations), clamping z after every step. GMI's 5 random restarts are our ``samples`` per
identity; its final choice — the restart with the highest target logit — is our ``select``.

Step size: GMI's code averages the loss over its batch of :data:`OFFICIAL_BATCH` (100) latents,
so each latent steps with lr / 100 on its own loss. We step on the per-sample *sum* with
lr_eff = lr / 100 (``lr`` keeps the paper's 0.02): the official batch's update exactly, and each
latent's update no longer depends on ``batch_size`` or on how the samples are chunked (with a
batch mean, ``mini``'s 64 + 64 + 32 split gave the last identities twice the step).

Remaining deviations from the official code:

- Latents are optimised in chunks of ``batch_size`` (64) instead of 100; with the summed loss
  this changes memory use only.
- ``mini``/``smoke`` scale the GAN's epochs and width and the attack's iterations (ours).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

import torch
from torch import nn

from mibench.access import TargetView
from mibench.attack import Attack, AttackContext, AttackSpec
from mibench.attacks.latent import Chunk, descend, invert_in_chunks
from mibench.attacks.losses import cross_entropy
from mibench.attacks.priors.cached import cached_module
from mibench.attacks.priors.dcgan import Critic, Generator
from mibench.attacks.priors.gan_prior import GANPriorConfig
from mibench.attacks.priors.wgan import train_wgan_gp
from mibench.config import Config, param
from mibench.registry import ATTACKS
from mibench.selection import best_per_identity, label_logit

OFFICIAL_BATCH = 100
"""The batch GMI's attack.py averages its loss over: the reference of the per-sample step."""


@dataclass
class GMIPriorConfig(GANPriorConfig):
    """GMI's WGAN-GP prior (its fields are the prior's cache key)."""

    z_dim: int = param(100, "latent dimension", ge=1)
    gan_epochs: float = param(280.0, "critic passes over the aux split", gt=0)
    n_critic: int = param(5, "critic steps per generator step", ge=1)
    gp_weight: float = param(10.0, "gradient-penalty weight", ge=0)


@dataclass
class GMIConfig(GMIPriorConfig):
    """GMI hyper-parameters; defaults from the public code (Celeba/celeba.json, attack.py)."""

    iterations: int = param(1500, "latent optimisation steps per sample", ge=1)
    lr: float = param(0.02, "attack learning rate", gt=0)
    momentum: float = param(0.9, "Nesterov momentum μ", ge=0, lt=1)
    identity_weight: float = param(100.0, "λ, weight of the identity (CE) loss", ge=0)
    clamp: float = param(1.0, "z is clamped to [−clamp, clamp] after every step", gt=0)
    batch_size: int = param(64, "latents optimised together", ge=1)

    presets: ClassVar[Mapping[str, Mapping[str, Any]]] = {
        "smoke": {"resolution": 32, "width": 0.125, "gan_epochs": 2.0, "iterations": 3,
                  "z_dim": 16},
        "mini": {"width": 0.25, "gan_epochs": 60.0, "iterations": 120},
    }


class BoxedNesterov(torch.optim.Optimizer):
    """GMI's update (attack.py): v ← μ·v − lr·∇z, z ← z − μ·v_prev + (1 + μ)·v, then z is
    clamped to [−clamp, clamp]."""

    def __init__(self, params: list[torch.Tensor], lr: float, momentum: float,
                 clamp: float) -> None:
        super().__init__(params, {"lr": lr, "momentum": momentum, "clamp": clamp})

    @torch.no_grad()
    def step(self, closure: None = None) -> None:
        for group in self.param_groups:
            lr, momentum, clamp = group["lr"], group["momentum"], group["clamp"]
            for z in group["params"]:
                previous = self.state[z].get("velocity", torch.zeros_like(z))
                velocity = momentum * previous - lr * z.grad
                z.copy_((z - momentum * previous + (1 + momentum) * velocity).clamp(-clamp, clamp))
                self.state[z]["velocity"] = velocity


@ATTACKS.register("gmi")
class GMI(Attack):
    """Generative model inversion with a WGAN-GP prior and latent optimisation."""

    spec = AttackSpec(name="gmi", title="The Secret Revealer (GMI)", paper="Zhang et al., CVPR",
                      year=2020, access="whitebox", prior="DCGAN + WGAN-GP")
    Config: ClassVar[type[Config]] = GMIConfig

    def prepare(self, ctx: AttackContext) -> None:
        cfg = self.config

        def make() -> nn.ModuleDict:
            return nn.ModuleDict({"generator": Generator(cfg.z_dim, cfg.resolution, cfg.width),
                                  "critic": Critic(cfg.resolution, cfg.width)})

        def train(prior: nn.Module) -> None:
            train_wgan_gp(prior["generator"], prior["critic"], ctx, epochs=cfg.gan_epochs,
                          batch_size=cfg.gan_batch_size, lr=cfg.gan_lr,
                          betas=tuple(cfg.gan_betas), n_critic=cfg.n_critic,
                          gp_weight=cfg.gp_weight)

        # keyed by the aux split alone, also where a variant's other parts depend on the target
        # (gmi+lomma's surrogates): GMI's prior never sees the target
        prior = cached_module(ctx, "prior-gmi", GMIPriorConfig.prior_settings(cfg), make, train,
                              data=ctx.aux_fingerprint)
        self.generator = prior["generator"].requires_grad_(False)
        self.critic = prior["critic"].requires_grad_(False)

    def identity_loss(self, target: TargetView, images: torch.Tensor,
                      labels: torch.Tensor) -> torch.Tensor:
        """The identity term per sample: cross-entropy of the target's logits (GMI); LOMMA
        (``attacks/lomma.py``) replaces it."""
        return cross_entropy(target.logits(images), labels)

    def invert(self, target: TargetView, labels: torch.Tensor,
               ctx: AttackContext) -> torch.Tensor:
        return invert_in_chunks(ctx, labels, self.config.batch_size,
                                lambda chunk: self._optimise(target, chunk, ctx),
                                lambda z, _: self.generator(z))

    def _optimise(self, target: TargetView, chunk: Chunk, ctx: AttackContext) -> torch.Tensor:
        """GMI's search from z ~ N(0, I) clamped to the prior's box."""
        cfg = self.config
        z = torch.randn(len(chunk.labels), cfg.z_dim, device=ctx.device,
                        generator=chunk.generator).clamp_(-cfg.clamp, cfg.clamp)
        return self.descend_from(target, z, chunk.labels, ctx)

    def descend_from(self, target: TargetView, z: torch.Tensor, labels: torch.Tensor,
                     ctx: AttackContext) -> torch.Tensor:
        """Nesterov-momentum descent on z (GMI attack.py), z clamped to the prior's box, on the
        per-sample loss summed, with lr / :data:`OFFICIAL_BATCH` per sample."""
        cfg = self.config
        z = z.clone().requires_grad_(True)

        def loss() -> torch.Tensor:
            images = self.generator(z)
            return (-self.critic(images) + cfg.identity_weight
                    * self.identity_loss(target, images, labels))

        optimiser = BoxedNesterov([z], lr=cfg.lr / OFFICIAL_BATCH, momentum=cfg.momentum,
                                  clamp=cfg.clamp)
        descend(optimiser, loss, cfg.iterations, ctx, "GMI")
        return z.detach()

    def select(self, target: TargetView, images: torch.Tensor, labels: torch.Tensor,
               ctx: AttackContext) -> torch.Tensor:
        """GMI keeps the restart with the highest target logit of the identity."""
        scores = label_logit(target, images, labels, self.config.batch_size)
        return best_per_identity(scores, labels)
