"""A class-conditional diffusion prior with classifier-free guidance (UAMI, Diff-MI; attacks.md
§5.2, §7.2), built from the shared blocks of ``priors/diffusion.py`` and ``priors/autoencoder.py``.

The denoiser is ADM's class-conditional UNet (guided-diffusion ``unet.py``, Dhariwal & Nichol,
NeurIPS 2021) as a diffusers ``UNet2DModel`` (:class:`ClassDenoiser`): a label embedding with
``C + 1`` rows (the last, class ``C``, is the null label of classifier-free guidance) is added to
the timestep embedding that every ResBlock reads (scale-shift norm), self-attention with a fixed
number of heads at the levels ``attention`` names, conv down/up-sampling. Null labels replace the
whole batch's with probability ``condition_dropout`` (ADM's ``p_uncond``, per batch). As for
FGMIA, ``smoke`` / ``mini`` denoise the latents of the shared autoencoder and predict v (a
pixel-space ε-prediction UNet does not train in CPU minutes); ``paper`` is the published
pixel-space ε-prediction model, whose official weights ``priors/adm_import.py`` reads.
``sampler_steps`` is not part of the prior's cache key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

import math

import torch
from diffusers import UNet2DModel
from diffusers.models.attention_processor import Attention
from torch import nn

from mibench.attack import AttackContext
from mibench.attacks.priors.autoencoder import (ConvAutoencoder, LatentSpaceConfig, random_flip,
                                                shared_autoencoder)
from mibench.attacks.priors.cached import cached_module
from mibench.attacks.priors.diffusion import PREDICTIONS, ddim_sample, train_denoiser
from mibench.config import param
from mibench.errors import ConfigError

# The paper's batch of 150 at 64 px needs ~74 GiB in one pass (mibench plan --preset paper);
# micro-batches of this size keep a training step under 24 GiB. Not part of the cache key:
# accumulation gives the full batch's update.
PAPER_MICRO_BATCH = 30
# 2: the ADM UNet (label embedding) replaced the one-hot cross-attention UNet.
CACHE_VERSION = "2"
PRIOR_FIELDS = ("space", "prediction", "resolution", "block_channels", "attention",
                "layers_per_block", "num_heads", "train_steps", "batch_size", "lr",
                "warmup", "weight_decay", "betas", "max_ema_decay", "condition_dropout",
                "flip_p")


@dataclass
class ClassDiffusionConfig(LatentSpaceConfig):
    """Prior and sampler hyper-parameters; defaults from Diff-MI's pre-training (ADM UNet at
    64 px, channels 128·(1, 2, 3, 4), 3 blocks, attention with 4 heads at 16 and 8 px; AdamW
    1e-4, EMA 0.9999, 10 % null batches, 50k steps), which UAMI's card adopts."""

    space: str = param("pixel", "denoise pixels (published) or the latents of the shared "
                       "autoencoder (CPU presets)", choices=("pixel", "latent"))
    prediction: str = param("epsilon", "what the UNet predicts", choices=PREDICTIONS)
    resolution: int = param(64, "generated image side", ge=8)
    block_channels: tuple[int, ...] = param((128, 256, 384, 512), "UNet channels per level")
    attention: tuple[bool, ...] = param((False, False, True, True),
                                        "self-attention at each UNet level")
    layers_per_block: int = param(3, "ResNet layers per UNet level", ge=1)
    num_heads: int = param(4, "attention heads of every attention block (ADM num_heads)", ge=1)
    train_steps: int = param(50_000, "prior training steps", ge=1)
    batch_size: int = param(150, "prior training batch size (the effective batch)", ge=1)
    micro_batch: int = param(PAPER_MICRO_BATCH, "images per forward/backward of a training "
                             "step, gradients accumulated over the batch (0 = batch_size)",
                             ge=0)
    lr: float = param(1e-4, "AdamW learning rate", gt=0)
    warmup: int = param(500, "learning-rate warm-up steps (ours; ADM uses none)", ge=1)
    weight_decay: float = param(0.0, "AdamW weight decay", ge=0)
    betas: tuple[float, ...] = param((0.9, 0.999), "AdamW betas")
    max_ema_decay: float = param(0.9999, "EMA decay cap", ge=0, lt=1)
    condition_dropout: float = param(0.1, "probability that a training batch gets the null "
                                     "label (CFG; ADM drops the whole batch)", ge=0, lt=1)
    flip_p: float = param(0.5, "horizontal-flip probability of training images", ge=0, le=1)
    sampler_steps: int = param(100, "DDIM steps", ge=1)
    guidance_scale: float = param(3.0, "classifier-free guidance w (1 = none)", ge=0)
    sample_batch: int = param(64, "images sampled together", ge=1)

    presets: ClassVar[Mapping[str, Mapping[str, Any]]] = {
        "smoke": {"space": "latent", "prediction": "v_prediction", "resolution": 16,
                  "block_channels": (16, 32), "attention": (True, True),
                  "layers_per_block": 1, "train_steps": 30, "batch_size": 16,
                  "lr": 1e-3, "warmup": 5, "max_ema_decay": 0.9, "sampler_steps": 4,
                  "latent_downsample": 4, "ae_width": 8, "ae_steps": 30, "micro_batch": 0},
        "mini": {"space": "latent", "prediction": "v_prediction", "block_channels": (32, 64),
                 "attention": (True, True), "layers_per_block": 1, "train_steps": 1500,
                 "batch_size": 64, "lr": 1e-3, "warmup": 100,
                 "max_ema_decay": 0.999, "sampler_steps": 10, "ae_width": 32,
                 "ae_steps": 1000, "micro_batch": 0},
    }

    def validate(self) -> None:
        if len(self.block_channels) != len(self.attention):
            raise ConfigError(f"{type(self).__name__}.attention: needs one entry per "
                              "block_channels level")
        if any(c % self.num_heads for c, a in zip(self.block_channels, self.attention) if a):
            raise ConfigError(f"{type(self).__name__}.num_heads: {self.num_heads} heads do not "
                              f"divide the attention levels' channels {self.block_channels}")


# ADM's names of the parameters Diff-MI fine-tunes (2_finetune train_util.py ``run_cls_only``:
# ``label_emb``, the middle block's ResBlock convolutions and its attention's ``proj_out``).
FINETUNED = ("class_embedding.", "mid_block.resnets.0.conv1.", "mid_block.resnets.0.conv2.",
             "mid_block.resnets.1.conv1.", "mid_block.resnets.1.conv2.",
             "mid_block.attentions.0.to_out.0.")


class ClassDenoiser(nn.Module):
    """ADM's class-conditional UNet as a diffusers ``UNet2DModel``: ``num_class_embeds = C + 1``
    (the label embedding added to the time embedding), scale-shift norm, sinusoidal time
    features as ADM's (cos first), ``num_heads`` heads in every attention block, ε (or v)
    output. ``forward(x, t, labels)``; label ``num_classes`` is the null class."""

    def __init__(self, *, sample_size: int, channels: int, num_classes: int,
                 block_channels: tuple[int, ...], attention: tuple[bool, ...],
                 layers_per_block: int, num_heads: int) -> None:
        super().__init__()
        groups = math.gcd(32, *block_channels)
        self.unet = UNet2DModel(
            sample_size=sample_size, in_channels=channels, out_channels=channels,
            block_out_channels=tuple(block_channels),
            down_block_types=tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in attention),
            up_block_types=tuple("AttnUpBlock2D" if a else "UpBlock2D"
                                 for a in reversed(attention)),
            layers_per_block=layers_per_block, freq_shift=0, flip_sin_to_cos=True,
            attention_head_dim=math.gcd(*block_channels), norm_num_groups=groups,
            attn_norm_num_groups=groups, resnet_time_scale_shift="scale_shift",
            num_class_embeds=num_classes + 1)
        for name, module in self.unet.named_modules():
            if isinstance(module, Attention):   # ADM: a fixed head count, not a fixed width
                module.heads = num_heads
                module.scale = (module.inner_dim // num_heads) ** -0.5
            if name.endswith(("conv2", "to_out.0")) or name == "conv_out":
                nn.init.zeros_(module.weight)   # ADM's zero_module on each residual branch
                nn.init.zeros_(module.bias)
        self.sample_size = sample_size
        self.channels = channels
        self.num_classes = num_classes
        self.num_heads = num_heads

    def context(self, labels: torch.Tensor | None, batch: int) -> torch.Tensor:
        """The class labels; ``None`` is the null class for the whole batch."""
        if labels is None:
            return torch.full((batch,), self.num_classes, dtype=torch.long,
                              device=self.unet.conv_in.weight.device)
        return labels.long()

    def dropped(self, labels: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """``labels`` with the null class where ``keep`` is false."""
        return torch.where(keep, labels, torch.full_like(labels, self.num_classes))

    def finetuned_parameters(self) -> list[nn.Parameter]:
        """Diff-MI's fine-tuned set (:data:`FINETUNED`)."""
        return [p for name, p in self.unet.named_parameters() if name.startswith(FINETUNED)]

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.unet(x, t, class_labels=labels).sample


class ClassDiffusionPrior:
    """A trained class-conditional denoiser and, in latent space, its autoencoder."""

    def __init__(self, denoiser: ClassDenoiser, autoencoder: ConvAutoencoder | None,
                 config: ClassDiffusionConfig) -> None:
        self.denoiser = denoiser
        self.autoencoder = autoencoder
        self.config = config

    def condition(self, labels: torch.Tensor) -> torch.Tensor:
        return self.denoiser.context(labels, len(labels))

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """[0, 1] images → the denoiser's space (latents, or pixels in [−1, 1])."""
        return self.autoencoder.encode(images) if self.autoencoder else images * 2 - 1

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """The denoiser's space → [0, 1] images."""
        return self.autoencoder.decode(x) if self.autoencoder else x.add(1).div(2).clamp(0, 1)

    def sample(self, labels: torch.Tensor, generator: torch.Generator,
               guidance_scale: float | None = None) -> torch.Tensor:
        """One [0, 1] image per label by DDIM with classifier-free guidance."""
        cfg = self.config
        w = cfg.guidance_scale if guidance_scale is None else guidance_scale
        out = []
        for start in range(0, len(labels), cfg.sample_batch):
            x = ddim_sample(self.denoiser, self.condition(labels[start:start + cfg.sample_batch]),
                            steps=cfg.sampler_steps, generator=generator,
                            clip_sample=self.autoencoder is None, guidance_scale=w,
                            prediction=cfg.prediction)
            out.append(self.decode(x).clamp(0, 1))
        return torch.cat(out)


def class_denoiser(cfg: ClassDiffusionConfig, num_classes: int,
                   autoencoder: ConvAutoencoder | None) -> ClassDenoiser:
    """An untrained :class:`ClassDenoiser` of ``cfg``'s size, in ``autoencoder``'s latent
    space when given, else in pixels."""
    return ClassDenoiser(
        sample_size=autoencoder.latent_size if autoencoder else cfg.resolution,
        channels=autoencoder.latent_channels if autoencoder else 3, num_classes=num_classes,
        block_channels=tuple(cfg.block_channels), attention=tuple(cfg.attention),
        layers_per_block=cfg.layers_per_block, num_heads=cfg.num_heads)


def class_diffusion_prior(ctx: AttackContext, cfg: ClassDiffusionConfig, component: str,
                          images: torch.Tensor, labels: torch.Tensor, num_classes: int,
                          labelling: Mapping[str, Any]) -> ClassDiffusionPrior:
    """Train (or load from the cache) a prior of the uint8 ``images`` given class ``labels``.

    The cache key is ``component`` + the prior fields + ``labelling`` (how the labels were
    obtained) + the context's data fingerprint (which names the target for target-dependent
    priors: the labels are the target's answers)."""
    autoencoder = (shared_autoencoder(ctx, cfg, cfg.resolution) if cfg.space == "latent"
                   else None)
    prior_config = {**{k: getattr(cfg, k) for k in PRIOR_FIELDS}, "labelling": dict(labelling)}
    if autoencoder is not None:
        prior_config["autoencoder"] = cfg.autoencoder_settings()

    def make() -> ClassDenoiser:
        return class_denoiser(cfg, num_classes, autoencoder)

    def train(denoiser: ClassDenoiser) -> None:
        conditions = labels.to(ctx.device)
        prior = ClassDiffusionPrior(denoiser, autoencoder, cfg)

        def samples(index: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
            batch = random_flip(images[index].float().div_(255), gen, cfg.flip_p)
            with torch.no_grad():
                return prior.encode(batch)

        train_denoiser(denoiser, ctx, samples=samples, conditions=conditions,
                       steps=cfg.train_steps, batch_size=cfg.batch_size, lr=cfg.lr,
                       warmup=cfg.warmup, weight_decay=cfg.weight_decay,
                       betas=tuple(cfg.betas), max_ema_decay=cfg.max_ema_decay,
                       condition_dropout=cfg.condition_dropout, drop_batch=True,
                       prediction=cfg.prediction, micro_batch=cfg.micro_batch,
                       desc=f"{component}")

    denoiser = cached_module(ctx, component, prior_config, make, train, version=CACHE_VERSION)
    return ClassDiffusionPrior(denoiser.requires_grad_(False), autoencoder, cfg)
