"""FGMIA — Feature-Guided Model Inversion Attacks (Lu et al., IEEE TIFS 2025), attacks.md §8.

Prior (§8.4): a conditional diffusion model trained on the aux split, each image paired with the
*target's* feature of that image, and its mirror image with the mirror's feature, as the official
code (white-box feature access; two forward queries per aux image).
The feature enters the UNet only through cross-attention (§8.3). Open-set features are
L2-normalised, closed-set ones are the raw penultimate features. ``paper`` denoises 112×112
pixels with the ~100M-parameter, 6-level UNet of the diffusers recipe; ``smoke`` / ``mini``
denoise the 8×8 latents of a small autoencoder shared by all diffusion attacks (issue #5: a
pixel-space UNet cannot train in CPU minutes) — the report names the space (``space``) — and
predict v instead of ε: with ε-prediction a prior trained for a few hundred steps samples
noise, with v-prediction (Salimans & Ho, ICLR 2022) it already samples the data (measured on a
two-colour toy set: 200 steps, ε: grey noise, v: the conditioned colour).

Attack (§8.5–8.6): no optimisation. For each identity, build its condition, draw the run's N
samples with a 50-step DDIM sampler (η = 0), and rank them by the cosine between each sample's
target feature and the condition (N forward queries per identity, the only attack-time queries).

Conditions (§8.7–8.8; TransF and ScaleFT are not in the public code, these are our
reconstructions):

- open-set: the identity's enrolled gallery template (ScaleFT reduces to unit norm);
- closed-set, **TransF**: the class-mean offset the linear head implies, d_k = Σ·(w_k − w̄). With
  Gaussian classes sharing a within-class covariance Σ_w, the Bayes classifier has rows
  w_k = Σ_w⁻¹m_k (+ const), so Σ_w·(w_k − w̄) = m_k − m̄ exactly (LDA) — with the *within-class*
  covariance of the labelled aux features (``transf_covariance="within"``) only. ``"total"``
  uses the total covariance of the aux features the prior was trained on, which adds the
  between-class spread and is not exact. With Σ = I (``"none"``, the default, attacks.md §8.7's
  recommendation) it is the centred row w_k − w̄, the direction that maximises the identity's
  logit margin over the average class per unit norm. ``transf_map`` instead takes d_k = f_k − μ
  with f_k the MAP feature of class k under N(μ, Σ) (``fgmia_readings.map_features``);
- closed-set, **ScaleFT** (``moment``, default): the feature at μ plus d_k scaled so that its
  standardised coordinates u = (f − μ)/σ have the root-mean-square size of a real feature
  (‖u‖ = √d): f̂_k = μ + σ ⊙ √d·(d_k/σ)/‖d_k/σ‖, with μ, σ the per-dimension statistics of the
  aux features. ``norm`` is the simpler norm matching f̂_k = s·d_k/‖d_k‖, s = mean feature norm.
  ``radius`` is ``moment`` at the mean standardised norm of the aux identity means instead of
  √d (``fgmia_readings.identity_radius``).
- ``oversample`` > 1 draws that many samples per requested one and keeps each identity's best
  by cosine to its condition (the official code: 2, 32 drawn and 16 kept).

The readings were measured (issue 18.6; ``mini``, 50 identities × 16 samples, seed 0, Eval
Acc@1 of all samples with 95 % intervals, ir152 / evolve): Σ = I 66.3 (58.6–73.6) / 73.8
(66.4–80.5) %, MAP 69.7 (62.0–76.6) / 72.6 (65.6–78.9) %, within-class Σ 55.4 / 64.5 %, total Σ
31.5 (23.1–40.5) / 37.0 (28.7–45.5) %, ScaleFT ``radius`` 31.4 / 37.9 % and ``oversample`` 2
36.8 / 41.9 % (both under total Σ). The default is Σ = I: as good as MAP within the intervals,
with no extra optimisation. The other readings stay selectable (``attacks/fgmia_readings.py``);
the ablations keep the paper's semantics under each (no-TransF: raw head rows; no-ScaleFT: the
TransF vector unscaled).

``mini`` samples with 10 DDIM steps, scaled down like every other attack's iterations (GMI:
1,500 → 120): Eval Acc@1 of all samples with 50 / 10 steps, 10 identities × 16 samples,
arcface-18 79.4 / 83.7 %, cosface-18 82.5 / 83.7 %, ir152 58.1 / 60.0 %, evolve 39.4 / 40.0 %,
facenet 51.2 / 53.8 % (open-set targets with the ``mean`` enrolment; ``sampler_steps`` is not
part of the prior's cache key).

Measured at ``mini`` on IR-152 (10 identities × 16 samples, Eval Acc@1 of all samples): the
class-mean of the real private features — not available to an attacker — as condition gives
66.9 %; TransF with the full aux covariance 52.5 %, with only its diagonal 39.4 %; the ScaleFT
radius (0.75–2 × √d) changes little.

Official weights: ``prior_checkpoint`` set to an FGMIA prior from FGMIA_codes' release (an
open-set, pixel-space UNet) replaces the trained prior (``priors/diffusion_import.py``).

Ablations (paper Table VI), registered as their own attacks: ``fgmia-no-fg`` conditions the prior
on the target's logits instead of its features (the identity's condition is then TransF/ScaleFT
of the identity matrix — the one-hot direction, scaled onto the aux logits);
``fgmia-no-transf`` uses the raw head row w_k; ``fgmia-no-scaleft`` uses t_k unscaled.

Remaining deviations from the official code (FGMIA_codes):

- Open set: the condition is the run's enrolled template (``run.enrolment``; the default
  ``single``, one seeded private-train image per identity, is the official protocol; ``mean``
  is the centroid of all of them).
- Closed set: TransF and ScaleFT are our reconstructions (not in the public code): the centred
  head row at the aux features' per-dimension spread (measured best of six readings, above).
- ``oversample`` defaults to 1 (the run's 16 samples drawn, all kept); the official code
  draws 32 and keeps the best 16 by cosine (``oversample=2``).
- ``smoke``/``mini`` denoise autoencoder latents with v-prediction (see above).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from mibench.access import TargetView
from mibench.attack import FORWARD_BATCH, Attack, AttackContext, AttackSpec
from mibench.attacks.fgmia_readings import (SCALEFT_MODES, aux_identity_stats, keep_best,
                                            scaleft, transf_directions)
from mibench.attacks.priors.autoencoder import (ConvAutoencoder, LatentSpaceConfig,
                                                shared_autoencoder)
from mibench.attacks.priors.cached import cached_module
from mibench.attacks.priors.diffusion import (PREDICTIONS, ConditionalDenoiser, ddim_sample,
                                              train_denoiser)
from mibench.attacks.priors.diffusion_import import SIZE_FIELDS, import_fgmia_unet
from mibench.batching import in_batches
from mibench.config import Config, param
from mibench.errors import ConfigError
from mibench.registry import ATTACKS
from mibench.selection import best_per_identity

PRIOR_FIELDS = ("condition", "space", "prediction", "resolution", "block_channels", "attention",
                "layers_per_block", "token_dim", "head_dim", "train_steps", "batch_size", "lr",
                "warmup", "weight_decay", "betas", "max_ema_decay", "condition_dropout",
                "flip")


@dataclass
class FGMIAConfig(LatentSpaceConfig):
    """FGMIA hyper-parameters. Defaults: FGMIA_codes (cross-attention width 512, 50 sampling
    steps, guidance 1) and, for training, the diffusers recipe the paper's values match
    (attacks.md §8.4, §8.10)."""

    condition: str = param("feature", "what the prior is conditioned on: the target's feature "
                           "(FG) or its logits (ablation no-FG)", choices=("feature", "logits"))
    transf: bool = param(True, "closed-set: TransF (class-mean offsets implied by the head); "
                         "off = raw head rows (ablation no-TransF)")
    transf_covariance: str = param("none", "TransF's Σ: none (centred rows only; measured "
                                   "best), the total aux feature covariance or the "
                                   "within-class one of the labelled aux split (exact under "
                                   "LDA)", source="ours",
                                   choices=("total", "within", "none"))
    transf_map: bool = param(False, "TransF as the MAP feature of each class under N(μ, Σ) "
                             "(a few Newton steps on the head) minus μ", source="ours")
    map_steps: int = param(10, "Newton steps of the MAP feature", ge=1, source="ours")
    scaleft: str = param("moment", "closed-set ScaleFT: moment (μ + the TransF offset at a "
                         "real feature's standardised spread √d), radius (at the aux identity "
                         "means' standardised norm), norm (mean feature norm) or none (ablation "
                         "no-ScaleFT)", choices=SCALEFT_MODES)
    oversample: int = param(1, "samples drawn per requested one; each identity keeps its best "
                            "by cosine to the condition (official code: 2)", ge=1)
    space: str = param("pixel", "denoise pixels (published) or the latents of the shared "
                       "autoencoder (CPU presets)", choices=("pixel", "latent"))
    prediction: str = param("epsilon", "what the UNet predicts: epsilon (published), "
                            "v_prediction or sample (x0)", choices=PREDICTIONS)
    resolution: int = param(112, "generated image side", ge=8)
    block_channels: tuple[int, ...] = param((128, 128, 256, 256, 512, 512),
                                            "UNet channels per level")
    attention: tuple[bool, ...] = param((False, False, False, False, True, False),
                                        "cross-attention at each UNet level")
    layers_per_block: int = param(2, "ResNet layers per UNet level", ge=1)
    token_dim: int = param(512, "cross-attention width: the condition is cut into tokens of "
                           "this size", ge=1)
    head_dim: int = param(8, "attention head size", ge=1)
    train_steps: int = param(300_000, "prior training steps (paper: 300–500k)", ge=1)
    batch_size: int = param(16, "prior training batch size", ge=1)
    lr: float = param(1e-4, "AdamW learning rate (cosine schedule)", gt=0)
    warmup: int = param(500, "learning-rate warm-up steps", ge=0)
    weight_decay: float = param(1e-6, "AdamW weight decay", ge=0)
    betas: tuple[float, ...] = param((0.95, 0.999), "AdamW betas")
    max_ema_decay: float = param(0.9999, "EMA decay cap", ge=0, lt=1)
    condition_dropout: float = param(0.0, "probability of dropping the condition in training "
                                     "(needed for guidance_scale ≠ 1)", ge=0, lt=1)
    flip: bool = param(True, "train on each aux image and its mirror image, each paired with "
                       "its own target feature (as the official code; one more forward query "
                       "per aux image)")
    sampler_steps: int = param(50, "DDIM steps", ge=1)
    eta: float = param(0.0, "DDIM η (0 = deterministic)", ge=0)
    guidance_scale: float = param(1.0, "classifier-free guidance (1 = none, as published)",
                                  ge=0)
    sample_batch: int = param(64, "images sampled together", ge=1)
    prior_checkpoint: str | None = param(None, "official FGMIA prior to import (pipeline or "
                                         "unet folder, or weights file) instead of training "
                                         "one; open-set targets, pixel space, epsilon only")

    presets: ClassVar[Mapping[str, Mapping[str, Any]]] = {
        "smoke": {"space": "latent", "prediction": "v_prediction", "resolution": 32, "block_channels": (16, 32),
                  "attention": (True, True), "layers_per_block": 1, "token_dim": 32,
                  "train_steps": 30, "batch_size": 16, "lr": 1e-3, "warmup": 5,
                  "max_ema_decay": 0.9, "sampler_steps": 4, "latent_downsample": 4,
                  "ae_width": 8, "ae_steps": 30},
        "mini": {"space": "latent", "prediction": "v_prediction", "resolution": 64, "block_channels": (32, 64),
                 "attention": (True, True), "layers_per_block": 1, "token_dim": 128,
                 "train_steps": 1500, "batch_size": 64, "lr": 1e-3, "warmup": 100,
                 "max_ema_decay": 0.999, "ae_width": 32, "ae_steps": 1000,
                 "sampler_steps": 10},
    }

    def validate(self) -> None:
        if len(self.block_channels) != len(self.attention):
            raise ConfigError("FGMIAConfig.attention: needs one entry per block_channels level")
        official = (self.condition, self.space, self.prediction) == ("feature", "pixel",
                                                                     "epsilon")
        if self.prior_checkpoint and not official:
            raise ConfigError("FGMIAConfig.prior_checkpoint: the official priors denoise pixels, "
                              "predict epsilon and take features; set condition=feature "
                              "space=pixel prediction=epsilon")
        if self.guidance_scale != 1.0 and self.condition_dropout == 0:
            raise ConfigError("FGMIAConfig.guidance_scale: classifier-free guidance needs a "
                              "prior trained with condition_dropout > 0 (e.g. 0.1)")


class FGMIAPrior(nn.Module):
    """The denoiser plus the statistics of the conditions it was trained on."""

    def __init__(self, denoiser: ConditionalDenoiser) -> None:
        super().__init__()
        self.denoiser = denoiser
        self.register_buffer("mean_norm", torch.zeros(()))
        self.register_buffer("covariance", torch.eye(denoiser.condition_dim))

    @property
    def mean(self) -> torch.Tensor:
        return self.denoiser.condition_mean

    @property
    def std(self) -> torch.Tensor:
        return self.denoiser.condition_std


@ATTACKS.register("fgmia")
class FGMIA(Attack):
    """Feature-guided diffusion inversion: one conditional sampling pass per identity."""

    spec = AttackSpec(name="fgmia", title="Feature-Guided MI (FGMIA)", paper="Lu et al., TIFS",
                      year=2025, access="whitebox", prior="feature-conditioned diffusion",
                      target_dependent_prior=True)
    Config: ClassVar[type[Config]] = FGMIAConfig

    def prepare(self, ctx: AttackContext) -> None:
        cfg = self.config
        target = ctx.target
        if target is None:
            raise ConfigError("FGMIA trains its prior on the target's features: it needs "
                              "the target view in the attack context")
        self.normalised = cfg.condition == "feature" and target.kind == "open"
        condition_dim = target.feature_dim if cfg.condition == "feature" else target.num_classes
        if cfg.prior_checkpoint:
            if not self.normalised:
                raise ConfigError("FGMIA's official priors are conditioned on open-set "
                                  "(normalised) features; use an open-set target")
            self.autoencoder = None
            denoiser = import_fgmia_unet(cfg.prior_checkpoint, condition_dim,
                                         {k: getattr(cfg, k) for k in SIZE_FIELDS})
            self.prior = FGMIAPrior(denoiser).to(ctx.device).requires_grad_(False)
            return
        self.autoencoder = self._autoencoder(ctx) if cfg.space == "latent" else None
        prior_config = {k: getattr(cfg, k) for k in PRIOR_FIELDS}
        if self.autoencoder is not None:
            prior_config["autoencoder"] = cfg.autoencoder_settings()

        def make() -> FGMIAPrior:
            space = self.autoencoder
            return FGMIAPrior(ConditionalDenoiser(
                sample_size=space.latent_size if space else cfg.resolution,
                channels=space.latent_channels if space else 3, condition_dim=condition_dim,
                block_channels=cfg.block_channels, attention=cfg.attention,
                layers_per_block=cfg.layers_per_block, token_dim=cfg.token_dim,
                head_dim=cfg.head_dim))

        prior = cached_module(ctx, "prior-fgmia", prior_config, make,
                              lambda module: self._train(module, target, ctx), version="3")
        self.prior = prior.requires_grad_(False)
        self.stats = None
        if not self.normalised and (cfg.transf_covariance == "within" or cfg.scaleft == "radius"):
            self.stats = aux_identity_stats(
                ctx, condition_dim, {"condition": cfg.condition, "resolution": cfg.resolution},
                lambda: self._conditions_of(target, ctx.aux_images(cfg.resolution)),
                self.prior.mean, self.prior.std)

    def _autoencoder(self, ctx: AttackContext) -> ConvAutoencoder:
        return shared_autoencoder(ctx, self.config, self.config.resolution)

    def _conditions_of(self, target: TargetView, images: torch.Tensor,
                       mirrored: bool = False) -> torch.Tensor:
        """The target's condition vectors of [0, 1] images, or of uint8 ones made float one
        batch at a time, each mirrored first if ``mirrored`` (the aux split is never copied
        whole; forward queries, no autograd)."""

        def conditions(batch: torch.Tensor) -> torch.Tensor:
            if batch.dtype == torch.uint8:
                batch = batch.float().div(255)
            if mirrored:
                batch = batch.flip(-1)
            logits, features = target(batch)
            vectors = features if self.config.condition == "feature" else logits
            return F.normalize(vectors, dim=1) if self.normalised else vectors

        with torch.no_grad():
            return in_batches(conditions, images, images.device, FORWARD_BATCH).to(images.device)

    def _train(self, prior: FGMIAPrior, target: TargetView, ctx: AttackContext) -> None:
        """Pair each aux image (and, with ``flip``, its mirror image) with its own target
        condition and fit the denoiser (§8.4)."""
        cfg = self.config
        images = ctx.aux_images(cfg.resolution)
        conditions = self._conditions_of(target, images)
        if cfg.flip:
            conditions = torch.cat([conditions, self._conditions_of(target, images, True)])
        prior.denoiser.set_condition_statistics(conditions)
        prior.mean_norm.fill_(conditions.norm(dim=1).mean().item())
        prior.covariance.copy_(torch.cov(conditions.t()))

        def samples(index: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
            mirrored = index >= len(images)
            batch = images[index % len(images)].float().div_(255)
            batch = torch.where(mirrored[:, None, None, None].to(batch.device), batch.flip(-1),
                                batch)
            if self.autoencoder is not None:
                with torch.no_grad():
                    return self.autoencoder.encode(batch)
            return batch * 2 - 1

        train_denoiser(prior.denoiser, ctx, samples=samples, conditions=conditions,
                       steps=cfg.train_steps, batch_size=cfg.batch_size, lr=cfg.lr,
                       warmup=cfg.warmup, weight_decay=cfg.weight_decay,
                       betas=tuple(cfg.betas), max_ema_decay=cfg.max_ema_decay,
                       condition_dropout=cfg.condition_dropout, prediction=cfg.prediction,
                       desc="FGMIA prior")

    def identity_conditions(self, target: TargetView, labels: torch.Tensor) -> torch.Tensor:
        """The condition of each identity in ``labels`` (no target queries, §8.7–8.8)."""
        cfg = self.config
        device = self.prior.mean.device
        if self.normalised:
            return target.gallery.to(device)[labels]
        if cfg.condition == "logits":
            head, bias = torch.eye(target.num_classes, device=device), None
        else:
            head, bias = target.head_weight.to(device), target.head_bias
        covariance = {"total": self.prior.covariance, "none": None,
                      "within": None if self.stats is None else self.stats.within_covariance
                      }[cfg.transf_covariance]
        directions = transf_directions(head, None if bias is None else bias.to(device),
                                       self.prior.mean, covariance, enabled=cfg.transf,
                                       use_map=cfg.transf_map, map_steps=cfg.map_steps)
        radius = None if self.stats is None else self.stats.radius.item()
        conditions = scaleft(directions, self.prior.mean, self.prior.std,
                             self.prior.mean_norm.item(), cfg.scaleft, radius)
        return conditions[labels]

    def invert(self, target: TargetView, labels: torch.Tensor,
               ctx: AttackContext) -> torch.Tensor:
        """``oversample`` draws per requested sample; each identity keeps its best ones by
        cosine to its condition (one forward query per draw)."""
        cfg = self.config
        requested = labels.to(ctx.device)
        labels = requested.repeat(cfg.oversample)
        conditions = self.identity_conditions(target, labels)
        out = []
        for start in ctx.progress(range(0, len(labels), cfg.sample_batch), desc="FGMIA sampling",
                                  unit="batch", leave=False):
            x = ddim_sample(self.prior.denoiser, conditions[start:start + cfg.sample_batch],
                            steps=cfg.sampler_steps, generator=ctx.generator(start),
                            clip_sample=self.autoencoder is None,
                            guidance_scale=cfg.guidance_scale, eta=cfg.eta,
                            prediction=cfg.prediction)
            images = self.autoencoder.decode(x) if self.autoencoder else x.add(1).div(2)
            out.append(images.clamp(0, 1).cpu())
        drawn = torch.cat(out)
        if cfg.oversample == 1:
            return drawn
        scores = torch.cat([self._scores(target, drawn[rows], labels[rows], ctx)
                            for rows in (slice(s, s + cfg.sample_batch)
                                         for s in range(0, len(labels), cfg.sample_batch))])
        return drawn[keep_best(scores, labels, requested)]

    def _scores(self, target: TargetView, images: torch.Tensor, labels: torch.Tensor,
                ctx: AttackContext) -> torch.Tensor:
        """Cosine of each image's target condition to its identity's condition (centred on the
        aux mean when conditions are not normalised), queries booked to ``labels``."""
        with ctx.ledger.scope(labels):
            observed = self._conditions_of(target, images.to(ctx.device))
        conditions = self.identity_conditions(target, labels)
        centre = 0 if self.normalised else self.prior.mean
        return F.cosine_similarity(observed - centre, conditions - centre, dim=1).cpu()

    def select(self, target: TargetView, images: torch.Tensor, labels: torch.Tensor,
               ctx: AttackContext) -> torch.Tensor:
        """Each identity's sample whose target condition is most cosine-similar to the
        identity's condition (centred on the aux mean when conditions are not normalised)."""
        return best_per_identity(self._scores(target, images, labels.to(ctx.device), ctx),
                                 labels.cpu())
