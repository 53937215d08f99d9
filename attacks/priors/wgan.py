"""WGAN-GP training of a generator on the auxiliary split (GMI's prior, attacks.md §1.2)."""

from __future__ import annotations

import math

import torch

from mibench.attacks.priors.dcgan import Critic, Generator, gradient_penalty
from mibench.attack import AttackContext


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
    bar = ctx.progress(range(critic_steps), desc="WGAN-GP prior", unit="step")
    for step in bar:
        index = torch.randint(len(data), (batch_size,), device=ctx.device, generator=gen)
        real = data[index].float().div_(255)
        z = torch.randn(batch_size, generator.z_dim, device=ctx.device, generator=gen)
        fake = generator(z).detach()
        loss_d = (critic(fake).mean() - critic(real).mean()
                  + gp_weight * gradient_penalty(critic, real, fake, gen))
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        if (step + 1) % n_critic == 0:
            z = torch.randn(batch_size, generator.z_dim, device=ctx.device, generator=gen)
            loss_g = -critic(generator(z)).mean()
            opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            opt_g.step()
            bar.set_postfix(d=f"{loss_d.item():.2f}", g=f"{loss_g.item():.2f}")
    generator.eval()
