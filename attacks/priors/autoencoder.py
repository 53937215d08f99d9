"""A small convolutional autoencoder: the latent space of the CPU-sized diffusion priors.

A pixel-space UNet is far too slow to train on a CPU in minutes, while a diffusion model on the
8×8 latents of a small autoencoder learns face-like samples in a few hundred steps (issue #5,
"CPU budget"). The ``smoke`` / ``mini`` presets of the diffusion attacks therefore denoise in
this latent space (as latent diffusion does, Rombach et al., CVPR 2022); ``paper`` stays in pixel
space as published. One autoencoder is trained per aux split and configuration, cached, and
shared by every diffusion attack.

The autoencoder is deterministic (no KL term): it is trained with an L1 + MSE reconstruction
loss, and its latents are rescaled by one scalar so that they have unit variance over the aux
split, the scale a DDPM noise schedule assumes (Stable Diffusion's ``scaling_factor``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mibench import precision
from mibench.attack import FORWARD_BATCH, AttackContext
from mibench.attacks.latent import show_losses
from mibench.attacks.priors.cached import cached_module
from mibench.batching import in_batches
from mibench.config import Config, param


def _norm_act(channels: int) -> list[nn.Module]:
    return [nn.GroupNorm(min(8, channels), channels), nn.SiLU()]


class ConvAutoencoder(nn.Module):
    """Images in [0, 1] at ``resolution`` ↔ ``latent_channels``×(resolution/downsample)² codes.

    Strided 4×4 convolutions down, transposed ones up, one 3×3 convolution at the latent
    resolution on each side: no convolution runs at full resolution, which keeps a training step
    at 64 px in milliseconds on a CPU."""

    def __init__(self, resolution: int, latent_channels: int = 4, downsample: int = 8,
                 width: int = 64) -> None:
        super().__init__()
        levels = int(math.log2(downsample))
        if 2 ** levels != downsample or resolution % downsample:
            raise ValueError(f"downsample must be a power of two dividing the resolution, got "
                             f"{downsample} for {resolution} px")
        self.resolution = resolution
        self.latent_channels = latent_channels
        self.latent_size = resolution // downsample
        channels = [3] + [min(width * 2 ** i, 4 * width) for i in range(levels)]
        encoder: list[nn.Module] = []
        for cin, cout in zip(channels, channels[1:]):
            encoder += [nn.Conv2d(cin, cout, 4, stride=2, padding=1), *_norm_act(cout)]
        encoder += [nn.Conv2d(channels[-1], channels[-1], 3, padding=1),
                    *_norm_act(channels[-1]), nn.Conv2d(channels[-1], latent_channels, 1)]
        decoder: list[nn.Module] = [nn.Conv2d(latent_channels, channels[-1], 3, padding=1),
                                    *_norm_act(channels[-1])]
        for cin, cout in zip(channels[:0:-1], channels[-2::-1]):
            decoder.append(nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1))
            if cout != 3:
                decoder += _norm_act(cout)
        self.encoder = nn.Sequential(*encoder)
        self.decoder = nn.Sequential(*decoder)
        self.register_buffer("scale", torch.ones(()))

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """[0, 1] images → unit-variance latents."""
        return self.encoder(images * 2 - 1) * self.scale

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents → images in [0, 1]."""
        return self.decoder(latents / self.scale).add(1).div(2).clamp(0, 1)




def train_autoencoder(model: ConvAutoencoder, ctx: AttackContext, *, steps: int,
                      batch_size: int, lr: float) -> None:
    """Adam on L1 + MSE reconstruction of aux images (random horizontal flips), cosine-decayed
    learning rate; then set ``scale`` to 1 / std of the aux latents. Forward passes run under
    the run's autocast; the aux split stays uint8, each batch made float on its own."""
    data = ctx.aux_images(model.resolution)
    gen = ctx.generator(7919)
    model.train()
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, steps)
    scaler = precision.LossScaler(ctx.device)
    bar = ctx.progress(range(steps), desc="autoencoder", unit="step")
    for step in bar:
        index = torch.randint(len(data), (batch_size,), device=ctx.device, generator=gen)
        images = random_flip(data[index].float().div_(255), gen)
        with precision.autocast(ctx.device):
            reconstruction = model.decoder(model.encoder(images * 2 - 1)).float()
        target = images * 2 - 1
        loss = F.l1_loss(reconstruction, target) + F.mse_loss(reconstruction, target)
        optimiser.zero_grad(set_to_none=True)
        scaler.step(loss, optimiser)
        schedule.step()
        show_losses(bar, step, loss=loss)
    model.eval()
    with torch.no_grad():
        latents = in_batches(lambda batch: model.encoder(batch.float().div(255) * 2 - 1), data,
                             data.device, FORWARD_BATCH)
    model.scale.fill_(1.0 / latents.std().clamp_min(1e-6).item())


def random_flip(images: torch.Tensor, gen: torch.Generator, p: float = 0.5) -> torch.Tensor:
    """Each image mirrored left–right with probability ``p``."""
    flip = torch.rand(len(images), device=images.device, generator=gen) < p
    return torch.where(flip[:, None, None, None], images.flip(-1), images)


AUTOENCODER_FIELDS = ("latent_channels", "latent_downsample", "ae_width", "ae_steps",
                      "ae_batch_size", "ae_lr")


@dataclass
class LatentSpaceConfig(Config):
    """The shared autoencoder's settings, inherited by the configs of diffusion attacks that
    may denoise its latents (``space = latent``)."""

    latent_channels: int = param(4, "autoencoder latent channels (latent space only)", ge=1)
    latent_downsample: int = param(8, "autoencoder downsampling factor", ge=1)
    ae_width: int = param(64, "autoencoder base channels", ge=1)
    ae_steps: int = param(2000, "autoencoder training steps", ge=1)
    ae_batch_size: int = param(64, "autoencoder batch size", ge=1)
    ae_lr: float = param(1e-3, "autoencoder Adam learning rate", gt=0)

    def autoencoder_settings(self) -> dict[str, Any]:
        """The autoencoder fields (part of the cache key of any prior trained on its latents)."""
        return {k: getattr(self, k) for k in AUTOENCODER_FIELDS}


def shared_autoencoder(ctx: AttackContext, cfg: LatentSpaceConfig,
                       resolution: int) -> ConvAutoencoder:
    """The aux split's autoencoder for ``cfg`` at ``resolution``, trained once and cached.

    Keyed by the aux data alone (never the target), so every diffusion attack and every target
    shares it."""
    latent_channels, downsample, width = cfg.latent_channels, cfg.latent_downsample, cfg.ae_width
    steps, batch_size, lr = cfg.ae_steps, cfg.ae_batch_size, cfg.ae_lr
    config = {"resolution": resolution, "latent_channels": latent_channels,
              "downsample": downsample, "width": width, "steps": steps,
              "batch_size": batch_size, "lr": lr}

    def make() -> ConvAutoencoder:
        return ConvAutoencoder(resolution, latent_channels, downsample, width)

    def train(model: nn.Module) -> None:
        train_autoencoder(model, ctx, steps=steps, batch_size=batch_size, lr=lr)

    model = cached_module(ctx, "prior-autoencoder", config, make, train,
                          data=ctx.aux_fingerprint)
    return model.requires_grad_(False)
