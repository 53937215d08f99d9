"""PLG-MI — Pseudo Label-Guided MI via a conditional GAN (Yuan et al., AAAI 2023), attacks.md §4.

Prior (target-dependent, cached per target):

1. Top-n pseudo-labelling (§4.2): the target scores every aux image; each class keeps its n aux
   images of highest softmax probability (score queries, one per aux image).
2. A conditional GAN (``priors/cgan.py``: conditional-BN ResNet generator, SN projection
   discriminator) trained with the hinge loss on the pseudo-labelled images (plus dequantisation
   noise U(0, 1/256)), the generator also minimising α · max-margin(T(aug(G(z, ŷ))), ŷ) for
   uniform ŷ (Adam 2e-4, betas (0, 0.9), n_dis discriminator steps per generator step); its
   forwards run under the run's autocast, its steps through the run's loss scaler.

Attack (§4.3): per sample, z ~ N(0, I) is optimised with Adam (lr 0.1) on the sum of the
max-margin loss of two independently augmented copies of G(z, y); the label stays fixed and no
discriminator term is used. ``samples`` per identity play PLG-MI's 5 seeds.

Conventions: G's tanh output in [−1, 1] is what D sees; the target gets (x + 1)/2, our [0, 1]
contract (the public code feeds [−1, 1] into [0, 1] targets, §4.2 quirk). Augmentation is the
official aug64 (``augment.PLGAugment``, §A.3) in training and attack: RandomResizedCrop(0.8–1.0,
ratio 1), ColorJitter(brightness 0.2, contrast 0.2; p 0.5 in training, 1 in the attack), flip,
RandomRotation(5°, p 0.5).
Queries: |aux| forward for the labels and gan_steps · gan_batch_size gradient queries in
training (``prepare``); 2 · ``iterations`` gradient queries per sample in the attack.

``mini`` scales the paper's budget (see the preset): a 32 px, width-16 cGAN (D 16→128 like
GMI's ``mini`` critic; the paper's 64 px, 64) with n_dis 4 of 5, 600 of 30,000 generator steps
at batch 32 of 64, top-10 of 30, and 50 of 600 attack iterations (GMI's ``mini`` fraction).
Measured (README "PLG-MI at ``mini``", ``benchmarks/plg_prior_quality.py``): its raw samples
G(z, y) stay near chance until ~600 steps and the attack then reaches 47.5 % (arcface-18) and
58.7 % (ir152) Eval Acc@1; the prior took 451–600 s on one thread of two shared cores.

Remaining deviations from the official code (train_cgan.py, reconstruct.py):

- The target and the augmentations see [0, 1] images; the official code feeds G's [−1, 1] (so
  its kornia ColorJitter first clamps away the negative half of the range).
- Each generator step follows its n_dis critic steps (official: the generator step comes first
  in every iteration); the official per-step target-accuracy logging queries are not made.
- A critic step scores the real and the fake batch in one forward (official: two), so its
  spectral norms take one power iteration per step, not two; each score is the one the image
  gets alone (the critic has no batch statistics; ``test_plg.py``).
- ``samples`` latents per identity replace the official 5 seeds × 60-identity batches; which
  identities are attacked and how results are averaged is the harness's protocol.
- The attack loss is summed over the latents, not averaged (``latent.descend``, issue 18.4):
  each latent's Adam step is independent of ``batch_size`` (the official mean's up to ε).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from mibench import precision
from mibench.access import TargetView
from mibench.attack import Attack, AttackContext, AttackSpec
from mibench.attacks.augment import PLGAugment
from mibench.attacks.latent import Chunk, descend, invert_in_chunks, show_losses
from mibench.attacks.losses import IDENTITY_LOSSES
from mibench.attacks.priors.cached import cached_module
from mibench.attacks.priors.cgan import ConditionalGenerator, ProjectionDiscriminator
from mibench.attacks.priors.gan_prior import GANPriorConfig
from mibench.attacks.priors.pseudo_labels import top_n_pseudo_labels
from mibench.config import Config, param
from mibench.errors import ConfigError
from mibench.registry import ATTACKS

@dataclass
class PLGPriorConfig(GANPriorConfig):
    """PLG-MI's cGAN prior, defaults from train_cgan.py (its fields are the cache key)."""

    resolution: int = param(64, "generator output side (power of two)", ge=8)
    width: int = param(64, "base channels c of G (16c…c) and D (c…16c)", ge=1)
    gan_betas: tuple[float, ...] = param((0.0, 0.9), "Adam betas of G and D")
    top_n: int = param(30, "aux images kept per class by the target's softmax", ge=1)
    gan_steps: int = param(30_000, "generator iterations", ge=1)
    n_dis: int = param(5, "discriminator steps per generator step", ge=1)
    inv_weight: float = param(0.2, "α, weight of the inversion loss in L_G", ge=0)
    inv_loss: str = param("max_margin", "identity loss in training and attack",
                          choices=("max_margin", "ce", "poincare"))
    aug_scale: tuple[float, ...] = param((0.8, 1.0), "RandomResizedCrop area range (aug64)")
    aug_jitter: tuple[float, ...] = param((0.2, 0.2), "ColorJitter brightness, contrast (aug64)")
    aug_flip: float = param(0.5, "horizontal-flip probability (aug64)", ge=0, le=1)
    aug_rotation: float = param(5.0, "RandomRotation degrees, p 0.5 (aug64)", ge=0)
    train_jitter_p: float = param(0.5, "ColorJitter probability in cGAN training", ge=0, le=1)

    def validate(self) -> None:
        for name in ("aug_scale", "aug_jitter"):
            if len(getattr(self, name)) != 2:
                raise ConfigError(f"PLGConfig.{name}: needs two values, e.g. "
                                  f"{self.__dataclass_fields__[name].default}")


@dataclass
class PLGConfig(PLGPriorConfig):
    """PLG-MI hyper-parameters; defaults from PLG-MI-Attack (train_cgan.py, reconstruct.py)."""

    iterations: int = param(600, "Adam steps on z per sample", ge=1)
    lr: float = param(0.1, "attack learning rate", gt=0)
    augmentations: int = param(2, "independently augmented copies per step", ge=1)
    attack_jitter_p: float = param(1.0, "ColorJitter probability in the attack (kornia's "
                                   "default)", ge=0, le=1)
    batch_size: int = param(60, "latents optimised together", ge=1)

    presets: ClassVar[Mapping[str, Mapping[str, Any]]] = {
        "smoke": {"top_n": 4, "z_dim": 16, "resolution": 16, "width": 4, "gan_steps": 4,
                  "gan_batch_size": 8, "n_dis": 1, "iterations": 3},
        # scaled: resolution, width, top_n, gan_steps, gan_batch_size, n_dis, iterations
        "mini": {"top_n": 10, "resolution": 32, "width": 16, "gan_steps": 600,
                 "gan_batch_size": 32, "n_dis": 4, "iterations": 50, "batch_size": 80},
    }


class PLGPrior(nn.Module):
    """Generator and discriminator of one target's cGAN."""

    def __init__(self, generator: ConditionalGenerator,
                 discriminator: ProjectionDiscriminator) -> None:
        super().__init__()
        self.generator = generator
        self.discriminator = discriminator


def build_prior(cfg: PLGPriorConfig, num_classes: int) -> PLGPrior:
    """An untrained cGAN for ``num_classes`` identities, sized by ``cfg``."""
    return PLGPrior(ConditionalGenerator(num_classes, cfg.z_dim, cfg.resolution, cfg.width),
                    ProjectionDiscriminator(num_classes, cfg.resolution, cfg.width))


@ATTACKS.register("plg")
class PLG(Attack):
    """Pseudo-label-guided conditional GAN, then latent optimisation with a max-margin loss."""

    spec = AttackSpec(name="plg", title="Pseudo Label-Guided MI (PLG-MI)",
                      paper="Yuan et al., AAAI", year=2023, access="whitebox",
                      prior="conditional GAN (cBN ResNet G, SN projection D)",
                      target_dependent_prior=True)
    Config: ClassVar[type[Config]] = PLGConfig

    def prepare(self, ctx: AttackContext) -> None:
        cfg = self.config
        target = ctx.target
        if target is None:
            raise ConfigError("PLG-MI pseudo-labels the aux split with the target: it needs "
                              "the target view in the attack context")

        prior = cached_module(ctx, "prior-plg", PLGPriorConfig.prior_settings(cfg),
                              lambda: build_prior(cfg, target.num_classes),
                              lambda module: self.train_prior(module, target, ctx))
        self.generator = prior.generator.requires_grad_(False)

    def _augment(self, jitter_p: float) -> PLGAugment:
        cfg = self.config
        brightness, contrast = cfg.aug_jitter
        return PLGAugment(scale=tuple(cfg.aug_scale), brightness=brightness, contrast=contrast,
                          jitter_p=jitter_p, flip=cfg.aug_flip, degrees=cfg.aug_rotation)

    def train_prior(self, prior: PLGPrior, target: TargetView, ctx: AttackContext) -> None:
        """Hinge cGAN on the top-n pseudo-labelled aux images plus α · L_inv (train_cgan.py)."""
        cfg = self.config
        images = ctx.aux_images(cfg.resolution)
        index, labels = top_n_pseudo_labels(target, images, cfg.top_n)
        index, labels = index.to(ctx.device), labels.to(ctx.device)
        generator, discriminator = prior.generator.train(), prior.discriminator.train()
        opt_g = torch.optim.Adam(generator.parameters(), lr=cfg.gan_lr, betas=tuple(cfg.gan_betas))
        opt_d = torch.optim.Adam(discriminator.parameters(), lr=cfg.gan_lr,
                                 betas=tuple(cfg.gan_betas))
        inv_loss, augment = IDENTITY_LOSSES[cfg.inv_loss], self._augment(cfg.train_jitter_p)
        gen = ctx.generator(15485863)
        n, classes = cfg.gan_batch_size, target.num_classes

        def fake(grad: bool) -> tuple[torch.Tensor, torch.Tensor]:
            z = torch.randn(n, cfg.z_dim, device=ctx.device, generator=gen)
            y = torch.randint(classes, (n,), device=ctx.device, generator=gen)
            with torch.set_grad_enabled(grad), precision.autocast(ctx.device):
                return generator(z, y), y

        scale_g, scale_d = precision.LossScaler(ctx.device), precision.LossScaler(ctx.device)
        bar = ctx.progress(range(cfg.gan_steps), desc="PLG-MI cGAN", unit="step")
        for step in bar:
            for _ in range(cfg.n_dis):
                pick = torch.randint(len(index), (n,), device=ctx.device, generator=gen)
                real = images[index[pick]].float().div_(255)
                real = real + torch.rand(real.shape, device=ctx.device, generator=gen) / 256
                x_fake, y_fake = fake(grad=False)
                with precision.autocast(ctx.device):
                    scores = discriminator(torch.cat([real * 2 - 1, x_fake.to(real.dtype)]),
                                           torch.cat([labels[pick], y_fake]))
                    loss_d = F.relu(1 - scores[:n]).mean() + F.relu(1 + scores[n:]).mean()
                opt_d.zero_grad(set_to_none=True)
                scale_d.step(loss_d, opt_d)
            x_fake, y_fake = fake(grad=True)
            with precision.autocast(ctx.device):
                logits = target.logits(augment((x_fake + 1) / 2, gen))
                loss_inv = inv_loss(logits, y_fake).mean()
                loss_g = -discriminator(x_fake, y_fake).mean() + cfg.inv_weight * loss_inv
            opt_g.zero_grad(set_to_none=True)
            scale_g.step(loss_g, opt_g)
            show_losses(bar, step, d=loss_d, g=loss_g, inv=loss_inv)
        generator.eval()

    def invert(self, target: TargetView, labels: torch.Tensor,
               ctx: AttackContext) -> torch.Tensor:
        return invert_in_chunks(ctx, labels, self.config.batch_size,
                                lambda chunk: self._optimise(target, chunk, ctx),
                                lambda z, chunk_labels: (self.generator(z, chunk_labels) + 1) / 2)

    def _optimise(self, target: TargetView, chunk: Chunk, ctx: AttackContext) -> torch.Tensor:
        """Adam on z, label fixed, summed identity loss over augmented copies (reconstruct.py)."""
        cfg = self.config
        labels, gen = chunk.labels, chunk.generator
        z = torch.randn(len(labels), cfg.z_dim, device=ctx.device,
                        generator=gen).requires_grad_(True)
        loss_fn, augment = IDENTITY_LOSSES[cfg.inv_loss], self._augment(cfg.attack_jitter_p)

        def loss() -> torch.Tensor:
            images = (self.generator(z, labels) + 1) / 2
            copies = torch.cat([augment(images, gen) for _ in range(cfg.augmentations)])
            logits = target.logits(copies)
            return loss_fn(logits, labels.repeat(cfg.augmentations)).view(
                cfg.augmentations, -1).sum(0)

        descend(torch.optim.Adam([z], lr=cfg.lr), loss, cfg.iterations, ctx, "PLG-MI")
        return z.detach()
