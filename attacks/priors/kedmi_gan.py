"""KEDMI's inversion-specific GAN (Chen et al., ICCV 2021, §3.1; public code
SCccc21/Knowledge-Enriched-DMI ``k+1_gan.py``, ``discri.py``).

The discriminator is a K-way classifier over the target's classes (the "K + 1" GAN of Salimans
et al. 2016 with the fake class implicit): D(x) = Z(x) / (Z(x) + 1) with Z(x) = Σ_k exp(l_k(x)).
It is trained on the aux split with

- a *supervised* term: cross-entropy between its class logits and the target's soft labels of
  the aux image (knowledge from the target; the only target queries of the prior), and
- an *unsupervised* term: real aux images are "real", generated ones "fake", via Z(x);

the generator is trained by feature matching (the L1 distance between the mean discriminator
features of generated and real images) plus 1e-4 × the entropy of the discriminator's class
prediction on generated images (``HLoss``). The discriminator has GMI's critic convolutions, then
minibatch discrimination (Salimans et al.) before its linear head.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mibench import precision
from mibench.attack import AttackContext
from mibench.attacks.latent import show_losses
from mibench.attacks.priors.dcgan import Generator, stride_levels

ENTROPY_WEIGHT = 1e-4      # k+1_gan.py: g_loss = |mom_gen − mom_unlabel| + 1e-4 · Hloss


class MinibatchDiscrimination(nn.Module):
    """Salimans et al. (2016) §3.2: for each sample, Σ_j exp(−‖M_i,b − M_j,b‖₁) over the other
    samples j of the batch, per kernel b; appended to the sample's features."""

    def __init__(self, in_features: int, kernels: int = 64, kernel_dim: int = 50) -> None:
        super().__init__()
        self.kernels, self.kernel_dim = kernels, kernel_dim
        self.tensor = nn.Parameter(torch.randn(in_features, kernels * kernel_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = (x @ self.tensor).view(-1, self.kernels, self.kernel_dim).transpose(0, 1)
        distance = torch.cdist(m, m, p=1)                          # kernels × N × N
        closeness = torch.exp(-distance).sum(2).T - 1              # minus the sample itself
        return torch.cat([x, closeness], dim=1)


class KEDMIDiscriminator(nn.Module):
    """Image in [0, 1] → (features, K class logits); ``MinibatchDiscriminator`` of the public
    code at ``width=1`` and 64 px (convolutions 64-128-256-256, minibatch kernels 64 × 50)."""

    def __init__(self, num_classes: int, resolution: int = 64, width: float = 1.0) -> None:
        super().__init__()
        levels = stride_levels(resolution)
        dim = max(8, int(64 * width))
        channels = [dim * min(2 ** i, 4) for i in range(levels)]

        def block(c_in: int, c_out: int, kernel: int, padding: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(c_in, c_out, kernel, 2, padding),
                                 nn.InstanceNorm2d(c_out, affine=True), nn.LeakyReLU(0.2))

        layers = [block(3, channels[0], 5, 2)]
        for i, (c_in, c_out) in enumerate(zip(channels[:-1], channels[1:]), start=1):
            last = i == levels - 1
            layers.append(block(c_in, c_out, 3 if last else 5, 1 if last else 2))
        self.net = nn.Sequential(*layers)
        features = channels[-1] * 16
        self.minibatch = MinibatchDiscrimination(features)
        self.head = nn.Linear(features + self.minibatch.kernels, num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.net(x).flatten(1)
        return features, self.head(self.minibatch(features))


def realness(logits: torch.Tensor) -> torch.Tensor:
    """log Z(x) = logsumexp of the class logits: D(x) = σ(log Z(x))."""
    return torch.logsumexp(logits.float(), dim=1)


def prior_loss(logits: torch.Tensor) -> torch.Tensor:
    """−log D(x) per sample, the attack's prior term: softplus(log Z) − log Z (recovery)."""
    lse = realness(logits)
    return F.softplus(lse) - lse


def discriminator_loss(labelled: torch.Tensor, soft_labels: torch.Tensor,
                       unlabelled: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Soft-label cross-entropy on labelled aux images + ½ (−log D(real) − log(1 − D(fake)))."""
    supervised = -(soft_labels * F.log_softmax(labelled.float(), dim=1)).sum(1).mean()
    unsupervised = 0.5 * (prior_loss(unlabelled).mean() + F.softplus(realness(fake)).mean())
    return supervised + unsupervised


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Σ over the batch of the entropy of softmax(logits) (the public code's ``HLoss``)."""
    logits = logits.float()
    return -(F.softmax(logits, dim=1) * F.log_softmax(logits, dim=1)).sum()


def train_kedmi_gan(generator: Generator, discriminator: KEDMIDiscriminator,
                    soft_labels: torch.Tensor, ctx: AttackContext, *, epochs: float,
                    batch_size: int, lr: float, betas: tuple[float, float],
                    n_critic: int) -> None:
    """Train the KEDMI GAN on the aux split: one discriminator step per batch (a labelled and
    an unlabelled batch of aux images and a generated batch), one generator step every
    ``n_critic`` discriminator steps. ``soft_labels`` are the target's class probabilities of
    every aux image (aux order)."""
    n = len(ctx.aux.images)
    gen = ctx.generator(2021)
    soft_labels = soft_labels.to(ctx.device)
    generator.train(), discriminator.train()
    opt_g = torch.optim.Adam(generator.parameters(), lr=lr, betas=betas)
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=lr, betas=betas)
    scale_g, scale_d = precision.LossScaler(ctx.device), precision.LossScaler(ctx.device)
    steps = max(n_critic, math.ceil(epochs * n / batch_size))

    def aux(index: torch.Tensor) -> torch.Tensor:
        return ctx.aux_batch(index, generator.resolution).float().div_(255)

    def draw() -> torch.Tensor:
        return torch.randint(n, (batch_size,), device=ctx.device, generator=gen)

    bar = ctx.progress(range(steps), desc="KEDMI GAN prior", unit="step")
    for step in bar:
        labelled, unlabelled = draw(), draw()
        z = torch.randn(batch_size, generator.z_dim, device=ctx.device, generator=gen)
        with precision.autocast(ctx.device):
            fake = generator(z).detach()
            loss_d = discriminator_loss(discriminator(aux(labelled))[1], soft_labels[labelled],
                                        discriminator(aux(unlabelled))[1],
                                        discriminator(fake)[1])
        opt_d.zero_grad(set_to_none=True)
        scale_d.step(loss_d, opt_d)
        if (step + 1) % n_critic == 0:
            discriminator.requires_grad_(False)
            z = torch.randn(batch_size, generator.z_dim, device=ctx.device, generator=gen)
            with precision.autocast(ctx.device):
                fake_features, fake_logits = discriminator(generator(z))
                real_features, _ = discriminator(aux(draw()))
                loss_g = ((fake_features.float().mean(0) - real_features.float().mean(0))
                          .abs().mean() + ENTROPY_WEIGHT * entropy(fake_logits))
            opt_g.zero_grad(set_to_none=True)
            scale_g.step(loss_g, opt_g)
            discriminator.requires_grad_(True)
            show_losses(bar, step // n_critic, d=loss_d, g=loss_g)
    generator.eval(), discriminator.eval()
