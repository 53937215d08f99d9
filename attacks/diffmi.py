"""Diff-MI — MI via a target-specific conditional diffusion model (Li et al., CVPR 2024 /
arXiv 2407.11424), attacks.md §5.

Prior (§5.2), target-dependent and cached per target:

1. Pre-training: the class-conditional ADM UNet with CFG of ``priors/class_diffusion.py`` (label
   embedding added to the time embedding, null label C, 10 % null batches) on PLG-MI's top-n
   pseudo-labelled aux set (score queries, one per aux image); or, with ``prior_checkpoint``,
   the official pre-trained ADM state dict (``priors/adm_import.py``, pixel space).
2. Target-specific fine-tuning: only ADM's ``label_emb`` and the middle block's ResBlock
   convolutions and attention ``proj_out`` are trained (``run_cls_only``). Per step,
   ``ft_classes`` of the first ``ft_class_fraction`` of the classes (the official 0–299 of
   1,000) are sampled from noise with a CFG sampler *with gradients*; the predicted x̂₀ of the
   last ``ft_keep`` steps (the final sample included) go through ``ft_augmentations`` aug64
   copies (crop, jitter, flip, rotation: ``augment.PLGAugment`` with p 0.5 jitter) into the
   target, and ``top-k margin + p_reg_weight · ‖feat − p_reg[y]‖²`` is minimised (AdamW); an
   epoch whose mean target accuracy reaches ``ft_threshold`` ends the fine-tuning. ``p_reg[y]``
   is the mean target feature of class y's top-n aux images (the public code downloads it;
   [INFERRED]).

Attack (§5.3), the image itself is optimised (the denoiser's latent at CPU presets): ``steps``
iterations each take an Adamax step on the diffusion loss ‖ε̂_w(x_t, t, y) − ε‖² at a decreasing,
jittered t (a score-distillation-like prior term, CFG w), tracking an EMA (α = 0.5) of its
gradient norm, then an Adamax step on the classifier loss of ``augmentations`` copies under the
official attack augmentation (``augment.DiffMIAugment``: flip, brightness jitter p 0.5, 7×7
σ 3 blur p 0.5, clamp) with its gradient norm clipped to 1.25× that EMA. Then the final
refinement: noise to t = ``final_start`` and denoise with the unclipped stochastic DDIM (η = 1)
of the ``final_grid``-step grid from there (10 steps at 100 / 100, as ``inverse_ddim``) with
CFG, and — the step easy to miss — a targeted L2 PGD on the target (ε 0.5, step 0.1, 10
iterations, random start, best iterate kept; ``pgd = False`` switches it off).
Queries per sample: ``steps · augmentations`` gradient queries, then ``pgd_steps`` gradient +
``pgd_steps + 1`` forward queries; fine-tuning and labelling are booked under ``prepare``.
Memory (issue 17): at ``paper`` a fine-tuning step back-propagates ``ft_micro_batch`` classes
at a time and an attack step runs the UNet and the target on ``attack_micro_batch`` images at a
time, gradients accumulated (the same update as the whole batch; 0 = unsplit, the CPU presets).

Remaining deviations from the official code:
- Fine-tuning samples with DDIM (η = 0) where Diff-MI uses DPM-Solver++(2M), same step count.
- The CPU presets denoise the shared autoencoder's latents and predict v (the attack optimises
  the latent); ``paper`` is the official pixel-space ε model.
- Pre-training follows the shared ``train_denoiser`` recipe (warm-up + cosine learning rate,
  gradient norm clipped to 1; ADM: constant 1e-4, no clipping), without dequantisation noise.
- The fine-tuning's stopping accuracy is the mean over every kept x̂₀, not the final sample's.
- The PGD's random start draws a uniform radius in the ε-ball (``robustness`` draws its own way).
- The augmentations run on [0, 1] images; the official kornia jitter sees [−1, 1] images (and
  clamps them to [0, 1] inside, an official quirk not reproduced).
- ``ft_class_fraction`` fine-tunes the first classes; identities beyond them are attacked with
  the pre-trained label embedding (the official attacks only 0–299).
- The refinement's DDIM uses each grid step's own ᾱ (the official feeds the UNet t = 10k with
  ᾱ of step 10k − 9); ADM import reads the legacy attention order only.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler

from mibench import precision
from mibench.access import TargetView
from mibench.attack import FORWARD_BATCH, Attack, AttackContext, AttackSpec
from mibench.attacks.augment import DiffMIAugment, PLGAugment
from mibench.attacks.latent import invert_in_chunks
from mibench.attacks.losses import cross_entropy, top_k_margin
from mibench.attacks.priors.adm_import import checkpoint_digest, load_adm
from mibench.attacks.priors.autoencoder import AUTOENCODER_FIELDS
from mibench.attacks.priors.cached import cached_module
from mibench.attacks.priors.class_diffusion import (CACHE_VERSION, PRIOR_FIELDS,
                                                    ClassDiffusionConfig, ClassDiffusionPrior,
                                                    class_denoiser, class_diffusion_prior)
from mibench.attacks.priors.diffusion import (TRAIN_TIMESTEPS, clip_to,
                                              ddim_denoise, guidance_context, guided_output,
                                              micro_batches, noise_scheduler, predicted_noise,
                                              weighted)
from mibench.attacks.priors.pseudo_labels import top_n_pseudo_labels
from mibench.batching import in_batches
from mibench.config import Config, param
from mibench.errors import ConfigError
from mibench.registry import ATTACKS

# Paper-size micro-batches that keep a step under 24 GiB (mibench plan --preset paper): the
# CFG reconstruction at 16 images (32 UNet rows with gradients), the fine-tuning at two classes
# (their sampler graphs, 10 steps x 2 CFG rows each, stay alive until the backward).
ATTACK_MICRO_BATCH = 16
FT_MICRO_BATCH = 2
FINETUNE_FIELDS = ("top_n", "ft_epochs", "ft_classes", "ft_lr", "ft_sampler_steps",
                   "ft_guidance", "ft_keep", "ft_augmentations", "top_k", "p_reg_weight",
                   "ft_threshold", "ft_class_fraction", "ft_augment")


@dataclass
class DiffMIConfig(ClassDiffusionConfig):
    """Diff-MI hyper-parameters; defaults from Ouxiang-Li/Diff-MI (2_finetune, 3_attack)."""

    top_n: int = param(30, "aux images kept per class by the target's softmax", ge=1)
    ft_epochs: int = param(100, "fine-tuning epochs at most (one pass over the classes)", ge=0)
    ft_classes: int = param(4, "classes sampled per fine-tuning step", ge=1)
    ft_lr: float = param(2e-4, "AdamW learning rate of the fine-tuning", gt=0)
    ft_sampler_steps: int = param(10, "sampler steps back-propagated through", ge=1)
    ft_guidance: float = param(3.0, "CFG scale of the fine-tuning sampler", ge=0)
    ft_keep: int = param(8, "last x̂₀ predictions per sample fed to the target", ge=1)
    ft_augmentations: int = param(2, "augmented copies per x̂₀ in fine-tuning", ge=1)
    ft_threshold: float = param(0.99, "epoch accuracy that ends the fine-tuning", ge=0, le=1)
    top_k: int = param(20, "k of the top-k margin loss", ge=0)
    p_reg_weight: float = param(1.0, "weight of the feature regulariser p-reg", ge=0)
    ft_class_fraction: float = param(0.3, "fraction of the classes fine-tuned, the first ones "
                                     "(the official 0–299 of 1,000)", gt=0, le=1)
    ft_augment: bool = param(True, "aug64 on the fine-tuning x̂₀ (crop, jitter, flip, "
                             "rotation); off: none")
    prior_checkpoint: str = param("", "official Diff-MI / guided-diffusion ADM state dict to "
                                  "start the fine-tuning from (pixel space); empty: pre-train "
                                  "our own")
    steps: int = param(30, "attack iterations", ge=1)
    attack_guidance: float = param(3.0, "CFG scale of the diffusion loss and the refinement",
                                   ge=0)
    augmentations: int = param(4, "augmented copies per attack step", ge=1)
    attack_lr: float = param(1.0, "Adamax learning rate on the image", gt=0)
    final_start: int = param(100, "timestep the final refinement noises to", ge=1,
                             lt=TRAIN_TIMESTEPS)
    final_grid: int = param(100, "DDIM grid of the refinement (steps ≤ final_start run)",
                            ge=1)
    pgd: bool = param(True, "finish with the targeted L2 PGD of the public attack")
    pgd_eps: float = param(0.5, "PGD L2 radius (64 px images)", gt=0)
    pgd_step: float = param(0.1, "PGD step size", gt=0)
    pgd_steps: int = param(10, "PGD iterations", ge=1)
    attack_batch: int = param(64, "images optimised together", ge=1)
    attack_micro_batch: int = param(ATTACK_MICRO_BATCH, "images per UNet / target call of an "
                                    "attack step, gradients accumulated (0 = attack_batch)",
                                    ge=0)
    ft_micro_batch: int = param(FT_MICRO_BATCH, "classes back-propagated through the sampler "
                                "together in a fine-tuning step, gradients accumulated "
                                "(0 = ft_classes)", ge=0)

    presets: ClassVar[Mapping[str, Mapping[str, Any]]] = {
        "smoke": {**ClassDiffusionConfig.presets["smoke"], "attack_micro_batch": 0,
                  "ft_micro_batch": 0, "top_n": 4, "ft_epochs": 1,
                  "ft_classes": 2, "ft_sampler_steps": 2, "ft_keep": 2, "top_k": 1,
                  "steps": 2, "augmentations": 1, "final_grid": 20, "pgd_steps": 2},
        "mini": {**ClassDiffusionConfig.presets["mini"], "attack_micro_batch": 0,
                 "ft_micro_batch": 0, "top_n": 10, "ft_epochs": 3,
                 "ft_sampler_steps": 4, "ft_keep": 4, "top_k": 5, "steps": 12,
                 "augmentations": 2},
    }


@ATTACKS.register("diffmi")
class DiffMI(Attack):
    """Target-specific conditional diffusion, iterative image reconstruction, PGD finish."""

    spec = AttackSpec(name="diffmi", title="Diff-MI: target-specific conditional diffusion",
                      paper="Li et al., CVPR", year=2024, access="whitebox",
                      prior="class-conditional diffusion (CFG), fine-tuned on the target",
                      target_dependent_prior=True)
    Config: ClassVar[type[Config]] = DiffMIConfig

    def prepare(self, ctx: AttackContext) -> None:
        cfg = self.config
        target = ctx.target
        if target is None:
            raise ConfigError("Diff-MI pseudo-labels the aux split and fine-tunes on the "
                              "target: it needs the target view in the attack context")
        images = ctx.aux_images(cfg.resolution)
        index, labels = top_n_pseudo_labels(target, images, cfg.top_n)
        self.p_reg = self._p_reg(target, images[index.to(ctx.device)], labels)
        finetune_config = {k: getattr(cfg, k) for k in PRIOR_FIELDS + AUTOENCODER_FIELDS
                           + FINETUNE_FIELDS}
        if cfg.prior_checkpoint:
            if cfg.space != "pixel":
                raise ConfigError("Diff-MI.prior_checkpoint: the official ADM denoises pixels; "
                                  "set space = pixel")
            pretrained = ClassDiffusionPrior(load_adm(cfg.prior_checkpoint, class_denoiser(
                cfg, target.num_classes, None)).to(ctx.device), None, cfg)
            finetune_config["prior_checkpoint"] = checkpoint_digest(cfg.prior_checkpoint)
        else:
            pretrained = class_diffusion_prior(ctx, cfg, "prior-diffmi-pretrain",
                                               images[index.to(ctx.device)], labels,
                                               target.num_classes,
                                               labelling={"top_n": cfg.top_n})
        denoiser = cached_module(
            ctx, "prior-diffmi", finetune_config, lambda: copy.deepcopy(pretrained.denoiser),
            lambda module: self._finetune(ClassDiffusionPrior(module, pretrained.autoencoder,
                                                              cfg), target, ctx),
            version=CACHE_VERSION)
        self.prior = ClassDiffusionPrior(denoiser.requires_grad_(False), pretrained.autoencoder,
                                         cfg)

    def _p_reg(self, target: TargetView, images: torch.Tensor,
               labels: torch.Tensor) -> torch.Tensor:
        """Mean target feature of each class's top-n aux images (forward queries)."""
        with torch.no_grad():
            features = in_batches(lambda batch: target.features(batch.float().div(255)), images,
                                  images.device, FORWARD_BATCH)
        sums = torch.zeros(target.num_classes, features.shape[1], device=features.device)
        sums.index_add_(0, labels.to(features.device), features)
        counts = torch.bincount(labels, minlength=target.num_classes).clamp_min(1)
        return sums / counts.to(features.device)[:, None]

    def _augment(self, finetune: bool) -> DiffMIAugment | PLGAugment | None:
        """aug64 in fine-tuning (2_finetune train_util.py, jitter p 0.5), the attack's own set
        in the attack (3_attack/attack.py)."""
        if not finetune:
            return DiffMIAugment()
        return PLGAugment(jitter_p=0.5) if self.config.ft_augment else None

    def _augmented(self, images: torch.Tensor, labels: torch.Tensor, copies: int,
                   gen: torch.Generator, finetune: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """``copies`` augmented copies of ``images`` and their labels."""
        augment = self._augment(finetune)
        copied = [augment(images, gen) if augment else images for _ in range(copies)]
        return torch.cat(copied), labels.repeat(copies)

    def _target_loss(self, target: TargetView, batch: torch.Tensor,
                     tiled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean top-k margin + p-reg of ``batch`` towards ``tiled``; also the hit rate."""
        cfg = self.config
        logits, features = target(batch)
        p_reg = self.p_reg.to(features.device)[tiled]
        loss = top_k_margin(logits, tiled, cfg.top_k) + cfg.p_reg_weight * (
            features - p_reg).pow(2).mean(1)
        return loss.mean(), (logits.argmax(1) == tiled).float().mean()

    def _finetune(self, prior: ClassDiffusionPrior, target: TargetView,
                  ctx: AttackContext) -> None:
        """Back-propagate the classifier loss through the CFG sampler into the class pathway
        and the middle block (2_finetune, ``run_cls_only``)."""
        cfg = self.config
        model = prior.denoiser
        model.requires_grad_(False)
        trainable = model.finetuned_parameters()
        for p in trainable:
            p.requires_grad_(True)
        optimiser = torch.optim.AdamW(trainable, lr=cfg.ft_lr, weight_decay=0.0)
        scaler = precision.LossScaler(ctx.device)
        scheduler = noise_scheduler(prior.autoencoder is None, cfg.prediction)
        scheduler.set_timesteps(cfg.ft_sampler_steps)
        gen = ctx.generator(7727)
        classes = max(1, round(cfg.ft_class_fraction * target.num_classes))
        bar = ctx.progress(range(cfg.ft_epochs), desc="Diff-MI fine-tune", unit="epoch")
        for _ in bar:
            order = torch.randperm(classes, device=ctx.device, generator=gen)
            hits = []
            for start in range(0, classes, cfg.ft_classes):
                labels = order[start:start + cfg.ft_classes]
                x = torch.randn(len(labels), model.channels, model.sample_size,
                                model.sample_size, device=ctx.device, generator=gen)
                optimiser.zero_grad(set_to_none=True)
                hits.append(self._finetune_backward(prior, target, x, labels, scheduler, gen,
                                                    scaler))
                scaler.apply(optimiser)
            accuracy = torch.stack(hits).double().sum().item() / len(hits)
            bar.set_postfix(acc=f"{accuracy:.2f}")
            if accuracy >= cfg.ft_threshold:
                break
        model.requires_grad_(False).eval()

    def _finetune_backward(self, prior: ClassDiffusionPrior, target: TargetView,
                           x: torch.Tensor, labels: torch.Tensor, scheduler: DDIMScheduler,
                           gen: torch.Generator, scaler: precision.LossScaler) -> torch.Tensor:
        """Accumulate one fine-tuning step's gradients, ``ft_micro_batch`` classes at a time
        (each micro-batch's loss weighted by its share); returns the step's hit rate."""
        cfg = self.config
        parts = micro_batches(len(labels), cfg.ft_micro_batch)
        hit_rate = torch.zeros((), device=x.device)
        for part in parts:
            final, predictions = ddim_denoise(prior.denoiser, x[part],
                                              prior.condition(labels[part]), scheduler,
                                              generator=gen, guidance_scale=cfg.ft_guidance)
            kept = predictions[-cfg.ft_keep:-1] + [final] if cfg.ft_keep > 1 else [final]
            images = prior.decode(torch.cat(kept))
            loss, hit = self._target_loss(target, *self._augmented(
                images, labels[part].repeat(len(kept)), cfg.ft_augmentations, gen, True))
            scaler.backward(weighted(loss, part, len(labels)))
            hit_rate += weighted(hit.detach(), part, len(labels))
        return hit_rate

    def invert(self, target: TargetView, labels: torch.Tensor,
               ctx: AttackContext) -> torch.Tensor:
        return invert_in_chunks(ctx, labels, self.config.attack_batch,
                                lambda chunk: self._reconstruct(target, chunk.labels,
                                                                chunk.generator))

    def _timestep(self, i: int, gen: torch.Generator, device: torch.device) -> torch.Tensor:
        """Diff-MI's decreasing schedule with a cosine wiggle and ±50 jitter."""
        s = self.config.steps
        t = ((s - i) / 1.5 + (s - i) / 3 * math.cos(3 * i / (10 * math.pi))) / s * 800 + 200
        jitter = torch.randint(-50, 51, (), device=device, generator=gen)
        return (t + jitter).round().clamp(1, TRAIN_TIMESTEPS - 1).long()

    def _reconstruct(self, target: TargetView, labels: torch.Tensor,
                     gen: torch.Generator) -> torch.Tensor:
        """Iterative image reconstruction (3_attack/attack.py), refinement and PGD."""
        cfg = self.config
        model, prior = self.prior.denoiser, self.prior
        device = labels.device
        schedule = noise_scheduler(prior.autoencoder is None, cfg.prediction)
        alphas = schedule.alphas_cumprod.to(device)
        parts = micro_batches(len(labels), cfg.attack_micro_batch)
        contexts = [guidance_context(model, prior.condition(labels[part]), cfg.attack_guidance)
                    for part in parts]
        x = torch.randn(len(labels), model.channels, model.sample_size, model.sample_size,
                        device=device, generator=gen).requires_grad_(True)
        optimiser = torch.optim.Adamax([x], lr=cfg.attack_lr)
        tracked = None
        for i in range(cfg.steps):
            t = self._timestep(i, gen, device)
            noise = torch.randn(x.shape, device=device, generator=gen)
            optimiser.zero_grad(set_to_none=True)
            self._diffusion_backward(x, t, noise, alphas[t], parts, contexts)
            norm = x.grad.norm().double()          # stays on the device: no host sync
            tracked = norm if tracked is None else 0.5 * tracked + 0.5 * norm
            optimiser.step()
            optimiser.zero_grad(set_to_none=True)
            self._classifier_backward(target, prior.decode(x), labels, gen)
            clip_to(x.grad, 1.25 * tracked)
            optimiser.step()
        with torch.no_grad():
            a = alphas[cfg.final_start]
            noise = torch.randn(x.shape, device=device, generator=gen)
            x_t = a.sqrt() * x + (1 - a).sqrt() * noise
            unclipped = noise_scheduler(False, cfg.prediction)
            unclipped.set_timesteps(cfg.final_grid)
            x0, _ = ddim_denoise(model, x_t, prior.condition(labels), unclipped, generator=gen,
                                 guidance_scale=cfg.attack_guidance, eta=1.0,
                                 start=cfg.final_start)
            images = prior.decode(x0)
        return self._pgd(target, images, labels, gen) if cfg.pgd else images

    def _diffusion_backward(self, x: torch.Tensor, t: torch.Tensor, noise: torch.Tensor,
                            a: torch.Tensor, parts: list[slice],
                            contexts: list[torch.Tensor]) -> None:
        """∇ₓ of the CFG diffusion loss ‖ε̂_w(x_t, t, y) − ε‖² (mean over the batch),
        accumulated over the micro-batches ``parts`` (each weighted by its share)."""
        cfg = self.config
        for part, context in zip(parts, contexts):
            x_t = a.sqrt() * x[part] + (1 - a).sqrt() * noise[part]
            out = guided_output(self.prior.denoiser, x_t, t, context, cfg.attack_guidance)
            loss = F.mse_loss(predicted_noise(out, x_t, a, cfg.prediction), noise[part])
            weighted(loss, part, len(x)).backward()

    def _classifier_backward(self, target: TargetView, images: torch.Tensor,
                             labels: torch.Tensor, gen: torch.Generator) -> None:
        """Back-propagate the classifier loss of ``augmentations`` augmented copies of
        ``images``, the target run on ``attack_micro_batch`` images' copies at a time: their
        gradients are gathered on the augmented batch, then sent back through the
        augmentations in one backward."""
        cfg = self.config
        batch, tiled = self._augmented(images, labels, cfg.augmentations, gen, False)
        leaf = batch.detach().requires_grad_(True)
        parts = micro_batches(len(leaf), cfg.attack_micro_batch * cfg.augmentations)
        for part in parts:
            loss, _ = self._target_loss(target, leaf[part], tiled[part])
            weighted(loss, part, len(leaf)).backward()
        batch.backward(leaf.grad)

    def _pgd(self, target: TargetView, images: torch.Tensor, labels: torch.Tensor,
             gen: torch.Generator) -> torch.Tensor:
        """Targeted L2 PGD towards ``labels`` in [0, 1] pixels, random start in the ε-ball,
        the lowest-loss iterate kept (the ``robustness`` attack the public code calls)."""
        cfg = self.config

        def project(x: torch.Tensor) -> torch.Tensor:
            delta = x - images
            norms = delta.flatten(1).norm(dim=1).clamp_min(1e-12)
            factor = (cfg.pgd_eps / norms).clamp(max=1).view(-1, 1, 1, 1)
            return (images + delta * factor).clamp(0, 1)

        start = torch.randn(images.shape, device=images.device, generator=gen)
        radius = torch.rand(len(images), device=images.device, generator=gen) * cfg.pgd_eps
        x = project(images + F.normalize(start.flatten(1), dim=1).view_as(images)
                    * radius.view(-1, 1, 1, 1))
        best, best_loss = x.clone(), torch.full((len(x),), float("inf"), device=x.device)
        for i in range(cfg.pgd_steps + 1):
            last = i == cfg.pgd_steps
            x.requires_grad_(not last)
            loss = cross_entropy(target.logits(x), labels)
            with torch.no_grad():
                better = loss < best_loss
                best[better], best_loss[better] = x[better], loss[better]
            if last:
                break
            grad, = torch.autograd.grad(loss.sum(), x)
            with torch.no_grad():
                x = project(x - cfg.pgd_step * F.normalize(grad.flatten(1), dim=1).view_as(x))
        return best.detach()
