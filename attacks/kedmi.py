"""KEDMI — "Knowledge-Enriched Distributional Model Inversion" (Chen et al., ICCV 2021).

Prior (§3.1): an inversion-specific GAN trained on the aux split whose discriminator also
classifies the target's soft labels of the aux images (``priors/kedmi_gan.py``): the target's
knowledge enters the prior, which makes it target-dependent.

Attack (§3.2, distributional recovery): for each identity k a Gaussian N(μ_k, diag σ_k²) in the
latent space, sampled with the reparameterisation trick z = μ + σ·ε, and optimised with Adam
(lr 0.02, 2,400 iterations, λ 100) on

    L(μ, σ) = E_ε[ −log D(G(z)) ] + λ · E_ε[ CE(T(G(z)), k) ],

one ε per identity and step (``recovery.py``, ``dist_inversion``: μ starts at 0 and log σ² at 1).
The attack's images are draws z ~ N(μ_k, σ_k²) — KEDMI's five seeds are our ``samples`` per
identity; the default selection keeps each identity's draw the target finds most likely.

The identity term is :meth:`KEDMI.identity_loss`, which LOMMA (``attacks/lomma.py``) replaces.

Remaining deviations from the official code:

- The discriminator's supervised target is the softmax of the target's logits (the paper's soft
  labels); the public code passes the classifier's raw outputs (logits) to ``softXEnt``.
- The aux images for the labelled and unlabelled batches are drawn with replacement per step
  (the public code iterates three shuffled loaders per epoch).
- ``mini``/``smoke`` scale the GAN's epochs and width and the attack's iterations (ours).
- The attack loss is summed over the chunk's identities, not averaged (``latent.descend``,
  issue 18.4): each Gaussian's Adam step is independent of ``batch_size`` (the official batch
  mean's up to Adam's ε).
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
from mibench.attacks.priors.dcgan import Generator
from mibench.attacks.priors.gan_prior import GANPriorConfig
from mibench.attacks.priors.kedmi_gan import KEDMIDiscriminator, prior_loss, train_kedmi_gan
from mibench.attacks.priors.pseudo_labels import soft_labels
from mibench.config import Config, param
from mibench.errors import ConfigError
from mibench.registry import ATTACKS


@dataclass
class KEDMIPriorConfig(GANPriorConfig):
    """The KEDMI GAN (its fields are the prior's cache key); ``k+1_gan.py`` and
    ``config/celeba.json`` of the public code."""

    z_dim: int = param(100, "latent dimension", ge=1)
    gan_epochs: float = param(120.0, "passes over the aux split (discriminator steps)", gt=0)
    n_critic: int = param(5, "discriminator steps per generator step", ge=1)


@dataclass
class KEDMIConfig(KEDMIPriorConfig):
    """KEDMI's distributional recovery; defaults from ``recovery.py`` (``dist_inversion``)."""

    iterations: int = param(2400, "Adam steps on (μ, log σ²) per identity", ge=1)
    lr: float = param(0.02, "attack learning rate", gt=0)
    identity_weight: float = param(100.0, "λ, weight of the identity loss", ge=0)
    init_log_var: float = param(1.0, "initial log σ² of every latent coordinate (μ starts at 0)")
    batch_size: int = param(60, "identities optimised together", ge=1)

    presets: ClassVar[Mapping[str, Mapping[str, Any]]] = {
        "smoke": {"resolution": 32, "width": 0.125, "gan_epochs": 2.0, "gan_batch_size": 16,
                  "iterations": 3, "z_dim": 16},
        "mini": {"width": 0.25, "gan_epochs": 30.0, "iterations": 200},
    }


@ATTACKS.register("kedmi")
class KEDMI(Attack):
    """Knowledge-enriched GAN prior, then one latent Gaussian per identity."""

    spec = AttackSpec(name="kedmi", title="Knowledge-Enriched Distributional MI (KEDMI)",
                      paper="Chen et al., ICCV", year=2021, access="whitebox",
                      prior="DCGAN + K-way semi-supervised discriminator",
                      target_dependent_prior=True)
    Config: ClassVar[type[Config]] = KEDMIConfig

    def prepare(self, ctx: AttackContext) -> None:
        cfg, target = self.config, ctx.target
        if target is None:
            raise ConfigError("KEDMI trains its discriminator on the target's soft labels of "
                              "the aux split: it needs the target view in the attack context")

        def make() -> nn.ModuleDict:
            return nn.ModuleDict({
                "generator": Generator(cfg.z_dim, cfg.resolution, cfg.width),
                "discriminator": KEDMIDiscriminator(target.num_classes, cfg.resolution,
                                                    cfg.width)})

        def train(prior: nn.Module) -> None:
            labels = soft_labels(target, ctx.aux_images(cfg.resolution))
            train_kedmi_gan(prior["generator"], prior["discriminator"], labels, ctx,
                            epochs=cfg.gan_epochs, batch_size=cfg.gan_batch_size, lr=cfg.gan_lr,
                            betas=tuple(cfg.gan_betas), n_critic=cfg.n_critic)

        prior = cached_module(ctx, "prior-kedmi", KEDMIPriorConfig.prior_settings(cfg), make,
                              train)
        self.generator = prior["generator"].requires_grad_(False)
        self.discriminator = prior["discriminator"].requires_grad_(False)

    def identity_loss(self, target: TargetView, images: torch.Tensor,
                      labels: torch.Tensor) -> torch.Tensor:
        """The identity term per sample: cross-entropy of the target's logits (KEDMI)."""
        return cross_entropy(target.logits(images), labels)

    def invert(self, target: TargetView, labels: torch.Tensor,
               ctx: AttackContext) -> torch.Tensor:
        """One Gaussian per identity, optimised in chunks of ``batch_size`` identities; every
        entry of ``labels`` is one draw from its identity's Gaussian."""
        identities, row_of = labels.cpu().unique(return_inverse=True)
        counts = torch.bincount(row_of, minlength=len(identities))
        order = torch.argsort(row_of, stable=True)

        def search(chunk: Chunk) -> torch.Tensor:
            mu, log_var = self._fit(target, chunk, ctx)
            draws = counts[chunk.rows].to(ctx.device)
            noise = torch.randn(int(draws.sum()), mu.shape[1], device=ctx.device,
                                generator=chunk.generator)
            return (mu.repeat_interleave(draws, 0)
                    + noise * log_var.mul(0.5).exp().repeat_interleave(draws, 0))

        grouped = invert_in_chunks(ctx, identities, self.config.batch_size, search,
                                   lambda z, _: self.generator(z))
        images = torch.empty_like(grouped)
        images[order] = grouped
        return images

    def _fit(self, target: TargetView, chunk: Chunk,
             ctx: AttackContext) -> tuple[torch.Tensor, torch.Tensor]:
        """Adam on (μ, log σ²) of the chunk's identities, one reparameterised draw each per step
        (``dist_inversion``)."""
        cfg = self.config
        n = len(chunk.labels)
        mu = torch.zeros(n, cfg.z_dim, device=ctx.device, requires_grad=True)
        log_var = torch.full((n, cfg.z_dim), cfg.init_log_var, device=ctx.device,
                             requires_grad=True)

        def loss() -> torch.Tensor:
            eps = torch.randn(n, cfg.z_dim, device=ctx.device, generator=chunk.generator)
            images = self.generator(mu + eps * log_var.mul(0.5).exp())
            prior = prior_loss(self.discriminator(images)[1])
            return prior + cfg.identity_weight * self.identity_loss(target, images, chunk.labels)

        descend(torch.optim.Adam([mu, log_var], lr=cfg.lr), loss, cfg.iterations, ctx, "KEDMI")
        return mu.detach(), log_var.detach()
