"""α-GAN (Rosca et al., 2017): FMI's prior, an auto-encoding GAN (attacks.md §3.2).

Four networks: encoder E (x → z), generator G (z → x; GMI's DCGAN generator, sigmoid output),
image discriminator D (the DCGAN critic's architecture, used as a logit) and code
discriminator C (an MLP without BatchNorm, as the α-GAN reference notes). Non-saturating
losses, with BCE on logits:
- E, G: λ·L1(G(E(x)), x) − log D(G(E(x))) − log D(G(z)) − log C(E(x)), z ~ N(0, I);
- D: real x against reconstructions G(E(x)) and samples G(z);
- C: prior codes z against encoded codes E(x);
Adam (lr 8e-4, betas (0.5, 0.9)) with ``eg_steps`` (2) E/G steps per D/C step, the defaults of
victor-shepardson/alpha-GAN. Forwards run under the run's autocast, steps through its loss
scaler (:mod:`mibench.precision`); the BCE and L1 losses are autocast to float32.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mibench import precision
from mibench.attack import AttackContext
from mibench.attacks.latent import show_losses
from mibench.attacks.priors.dcgan import Critic


class Encoder(Critic):
    """x ∈ [0, 1] → z: the critic's convolutional trunk with a ``z_dim``-channel 4×4 head."""

    def __init__(self, z_dim: int, resolution: int = 64, width: float = 1.0) -> None:
        super().__init__(resolution, width)
        self.net[-1] = nn.Conv2d(self.net[-1].in_channels, z_dim, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten(1)


class CodeDiscriminator(nn.Module):
    """z → logit that z came from the prior N(0, I) rather than from the encoder; no BN."""

    def __init__(self, z_dim: int, hidden: int = 750) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(z_dim, hidden), nn.LeakyReLU(0.2),
                                 nn.Linear(hidden, hidden), nn.LeakyReLU(0.2),
                                 nn.Linear(hidden, 1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).flatten()


def real(logits: torch.Tensor) -> torch.Tensor:
    """−log σ(logits): the non-saturating "this is real" loss."""
    return F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))


def real_per_sample(logits: torch.Tensor) -> torch.Tensor:
    """:func:`real` of each sample (averaged over a patch critic's outputs): −log σ = softplus(−ℓ)."""
    return F.softplus(-logits.float()).reshape(len(logits), -1).mean(1)


def fake(logits: torch.Tensor) -> torch.Tensor:
    """−log(1 − σ(logits))."""
    return F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits))


def train_alpha_gan(prior: nn.ModuleDict, ctx: AttackContext, *, epochs: float, batch_size: int,
                    lr: float, betas: tuple[float, float], recon_weight: float,
                    eg_steps: int) -> None:
    """Train ``prior`` (encoder, generator, discriminator, code_discriminator) on the aux split;
    one D/C step per real batch, preceded by ``eg_steps`` E/G steps on the same batch."""
    encoder, generator = prior["encoder"], prior["generator"]
    disc, code_disc = prior["discriminator"], prior["code_discriminator"]
    data = ctx.aux_images(generator.resolution)
    gen = ctx.generator(0)
    prior.train()
    opt_eg = torch.optim.Adam([*encoder.parameters(), *generator.parameters()], lr=lr,
                              betas=betas)
    opt_dc = torch.optim.Adam([*disc.parameters(), *code_disc.parameters()], lr=lr, betas=betas)
    steps = max(1, math.ceil(epochs * len(data) / batch_size))
    scale_eg, scale_dc = precision.LossScaler(ctx.device), precision.LossScaler(ctx.device)
    bar = ctx.progress(range(steps), desc="α-GAN prior", unit="step")
    for step in bar:
        index = torch.randint(len(data), (batch_size,), device=ctx.device, generator=gen)
        x = data[index].float().div_(255)
        for _ in range(eg_steps):
            with precision.autocast(ctx.device):
                code = encoder(x)
                recon = generator(code)
                sample = generator(torch.randn(code.shape, device=ctx.device, generator=gen))
                loss_eg = (recon_weight * F.l1_loss(recon, x) + real(disc(recon))
                           + real(disc(sample)) + real(code_disc(code)))
            opt_eg.zero_grad(set_to_none=True)
            scale_eg.step(loss_eg, opt_eg)
        with torch.no_grad(), precision.autocast(ctx.device):
            code = encoder(x)
            recon = generator(code)
            prior_code = torch.randn(code.shape, device=ctx.device, generator=gen)
            sample = generator(prior_code)
        with precision.autocast(ctx.device):
            loss_dc = (real(disc(x)) + fake(disc(recon)) + fake(disc(sample))
                       + real(code_disc(prior_code)) + fake(code_disc(code)))
        opt_dc.zero_grad(set_to_none=True)
        scale_dc.step(loss_dc, opt_dc)
        show_losses(bar, step, eg=loss_eg, dc=loss_dc)
    prior.eval()
