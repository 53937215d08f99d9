"""WGAN-GP training of a generator on the auxiliary split (GMI's prior, attacks.md §1.2).

Mixed precision: the generator and critic forwards of the losses run under the run's autocast;
the gradient penalty (a double backward through the critic) runs outside it, in float32.
"""

from __future__ import annotations

import math

import torch

from mibench import precision
from mibench.attack import AttackContext
from mibench.attacks.latent import show_losses
from mibench.attacks.priors.dcgan import Critic, Generator, gradient_penalty


def train_wgan_gp(generator: Generator, critic: Critic, ctx: AttackContext, *, epochs: float,
                  batch_size: int, lr: float, betas: tuple[float, float], n_critic: int,
                  gp_weight: float, seed_offset: int = 0) -> None:
    """Train ``generator`` against ``critic`` with WGAN-GP; one critic step per real batch and
    one generator step every ``n_critic`` critic steps (GMI's train_gan.py schedule)."""
    data = ctx.aux_images(generator.resolution)
    gen = ctx.generator(seed_offset)
    critic = critic.to(ctx.device).train()
    generator.train()
    opt_g = torch.optim.Adam(generator.parameters(), lr=lr, betas=betas)
    opt_d = torch.optim.Adam(critic.parameters(), lr=lr, betas=betas)
    critic_steps = max(n_critic, math.ceil(epochs * len(data) / batch_size))
    scale_g, scale_d = precision.LossScaler(ctx.device), precision.LossScaler(ctx.device)
    bar = ctx.progress(range(critic_steps), desc="WGAN-GP prior", unit="step")
    for step in bar:
        index = torch.randint(len(data), (batch_size,), device=ctx.device, generator=gen)
        real = data[index].float().div_(255)
        z = torch.randn(batch_size, generator.z_dim, device=ctx.device, generator=gen)
        with precision.autocast(ctx.device):
            fake = generator(z).detach().float()
            loss_d = critic(fake).mean() - critic(real).mean()
        loss_d = loss_d + gp_weight * gradient_penalty(critic, real, fake, gen)
        opt_d.zero_grad(set_to_none=True)
        scale_d.step(loss_d, opt_d)
        if (step + 1) % n_critic == 0:
            z = torch.randn(batch_size, generator.z_dim, device=ctx.device, generator=gen)
            with precision.autocast(ctx.device):
                loss_g = -critic(generator(z)).mean()
            opt_g.zero_grad(set_to_none=True)
            scale_g.step(loss_g, opt_g)
            show_losses(bar, step // n_critic, d=loss_d, g=loss_g)
    generator.eval()
