"""Workloads of the GAN attacks: GMI, FMI, PLG-MI (64 px priors), PPA and IF-GMI (StyleGAN).

Each function mirrors its attack's ``prepare`` (prior training: ``attacks/priors/wgan.py``,
``alphagan.py``, ``plg.py``, ``stylegan.py``) and ``invert`` loops; see :mod:`.workloads`.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Callable

import torch
from torch import nn

from mibench.attacks.priors.alphagan import CodeDiscriminator, Encoder
from mibench.attacks.priors.cgan import ConditionalGenerator, ProjectionDiscriminator
from mibench.attacks.priors.dcgan import Critic, Generator
from mibench.attack import FORWARD_BATCH
from mibench.attacks.priors.stylegan import StyleGAN, StyleGANPriorConfig, make_critic
from mibench.config import Config
from mibench.planning.count import Pass, StepCost, on_meta, step_cost
from mibench.planning.workloads import (ADAM_SLOTS, Phase, Setting, batches, combine,
                                        frozen_key, scaled, target_network, target_pass,
                                        target_queries, whole_config, with_data, workload)


# WGAN-GP's penalty and StyleGAN2's R1 differentiate ‖∇ₓD(x)‖² (double backward, which the
# FLOP counter's module hooks cannot follow): counted as this many more forward+backward
# passes of the critic on the batch — one for ∇ₓD with its graph, one for its backward.
PENALTY_PASSES = 2


def _penalty(critic: nn.Module, batch: int, resolution: int) -> Pass:
    return Pass(lambda: critic(torch.rand(batch, 3, resolution, resolution,
                                          requires_grad=True)).sum(), PENALTY_PASSES)


def _generator_part(generator: Callable[..., torch.Tensor],
                    inputs: Callable[[], tuple[torch.Tensor, ...]],
                    frozen: nn.Module | None = None) -> StepCost:
    """A frozen generator (``frozen``: its module, when ``generator`` is a method) with the
    gradient flowing back to its first input (the latent); ``inputs`` makes the inputs (on the
    meta device, inside the counted pass)."""
    def run() -> torch.Tensor:
        first, *rest = inputs()
        return generator(first.requires_grad_(True), *rest).sum()
    return step_cost([Pass(run)], frozen=[frozen if frozen is not None else generator])


# --- GMI --------------------------------------------------------------------------------------

@lru_cache(maxsize=None)
def _wgan_step(z_dim: int, resolution: int, width: float, batch: int, n_critic: int,
               data: int) -> StepCost:
    g = on_meta(lambda: Generator(z_dim, resolution, width))
    c = on_meta(lambda: Critic(resolution, width))

    def critic_step() -> torch.Tensor:
        real = torch.rand(batch, 3, resolution, resolution)
        with torch.no_grad():
            fake = g(torch.randn(batch, z_dim))
        return c(fake).mean() - c(real).mean()

    def generator_step() -> torch.Tensor:
        return -c(g(torch.randn(batch, z_dim))).mean()

    return step_cost([Pass(critic_step), _penalty(c, batch, resolution),
                      Pass(generator_step, 1 / n_critic)],
                     trained=[(g, ADAM_SLOTS), (c, ADAM_SLOTS)], data_bytes=data)


@lru_cache(maxsize=None)
def _dcgan_invert(z_dim: int, resolution: int, width: float, batch: int) -> StepCost:
    g = on_meta(lambda: Generator(z_dim, resolution, width))
    c = on_meta(lambda: Critic(resolution, width))
    return step_cost([Pass(lambda: c(g(torch.randn(batch, z_dim, requires_grad=True))).sum())],
                     frozen=[g, c])


@workload("gmi")
def gmi(cfg: Config, s: Setting) -> list[Phase]:
    steps = max(cfg.n_critic, math.ceil(cfg.gan_epochs * s.aux_images / cfg.gan_batch_size))
    return [
        Phase("WGAN-GP prior", "prior", steps, lambda: _wgan_step(
            cfg.z_dim, cfg.resolution, cfg.width, cfg.gan_batch_size, cfg.n_critic,
            s.aux_bytes(cfg.resolution)), share=("prior-gmi", whole_config(cfg))),
        Phase("invert", "attack", batches(s.generated, cfg.batch_size) * cfg.iterations,
              lambda: combine(_dcgan_invert(cfg.z_dim, cfg.resolution, cfg.width,
                                            cfg.batch_size),
                              target_pass(s, cfg.batch_size, cfg.resolution, True))),
    ]


# --- FMI --------------------------------------------------------------------------------------

@lru_cache(maxsize=None)
def _alpha_gan_step(z_dim: int, resolution: int, width: float, hidden: int, batch: int,
                    eg_steps: int, data: int) -> StepCost:
    e = on_meta(lambda: Encoder(z_dim, resolution, width))
    g = on_meta(lambda: Generator(z_dim, resolution, width))
    d = on_meta(lambda: Critic(resolution, width))
    c = on_meta(lambda: CodeDiscriminator(z_dim, hidden))

    def encoder_generator_step() -> torch.Tensor:
        x = torch.rand(batch, 3, resolution, resolution)
        code = e(x)
        return (g(code) - x).abs().mean() + d(g(code)).mean() + d(g(torch.randn(
            code.shape))).mean() + c(code).mean()

    def discriminator_step() -> torch.Tensor:
        x = torch.rand(batch, 3, resolution, resolution)
        with torch.no_grad():
            code = e(x)
            recon, sample = g(code), g(torch.randn(code.shape))
        return (d(x).mean() + d(recon).mean() + d(sample).mean() + c(torch.randn(code.shape))
                .mean() + c(code).mean())

    return step_cost([Pass(encoder_generator_step, eg_steps), Pass(discriminator_step)],
                     trained=[(e, ADAM_SLOTS), (g, ADAM_SLOTS), (d, ADAM_SLOTS),
                              (c, ADAM_SLOTS)], data_bytes=data)


@lru_cache(maxsize=None)
def _dcgan_generator(z_dim: int, resolution: int, width: float, batch: int) -> StepCost:
    g = on_meta(lambda: Generator(z_dim, resolution, width))
    return _generator_part(g, lambda: (torch.randn(batch, z_dim),))


@workload("fmi")
def fmi(cfg: Config, s: Setting) -> list[Phase]:
    steps = max(1, math.ceil(cfg.gan_epochs * s.aux_images / cfg.gan_batch_size))

    def invert() -> StepCost:
        parts = [_dcgan_generator(cfg.z_dim, cfg.resolution, cfg.width, cfg.batch_size),
                 target_pass(s, cfg.batch_size, cfg.resolution, True)]
        return with_data(combine(*parts), s.aux_bytes(cfg.resolution))

    return [
        Phase("α-GAN prior", "prior", steps, lambda: _alpha_gan_step(
            cfg.z_dim, cfg.resolution, cfg.width, cfg.code_hidden, cfg.gan_batch_size,
            cfg.eg_steps, s.aux_bytes(cfg.resolution)),
            share=("prior-fmi", whole_config(cfg))),
        Phase("invert", "attack", batches(s.generated, cfg.batch_size) * cfg.iterations, invert,
              note="code/realism terms not counted" if cfg.code_weight or cfg.realism_weight
              else ""),
    ]


# --- PLG-MI -----------------------------------------------------------------------------------

@lru_cache(maxsize=None)
def _cgan(z_dim: int, resolution: int, width: int, classes: int) -> tuple[nn.Module, nn.Module]:
    return (on_meta(lambda: ConditionalGenerator(classes, z_dim, resolution, width)),
            on_meta(lambda: ProjectionDiscriminator(classes, resolution, width)))


@lru_cache(maxsize=None)
def _cgan_step(z_dim: int, resolution: int, width: int, classes: int, batch: int, n_dis: int,
               data: int) -> StepCost:
    """PLG-MI's hinge cGAN step; its L_inv term through the target is added by the caller."""
    g, d = _cgan(z_dim, resolution, width, classes)

    def labels() -> torch.Tensor:
        return torch.randint(classes, (batch,))

    def discriminator_step() -> torch.Tensor:
        with torch.no_grad():
            fake = g(torch.randn(batch, z_dim), labels())
        return (d(torch.rand(batch, 3, resolution, resolution), labels()).mean()
                + d(fake, labels()).mean())

    def generator_step() -> torch.Tensor:
        return -d(g(torch.randn(batch, z_dim), labels()), labels()).mean()

    return step_cost([Pass(discriminator_step, n_dis), Pass(generator_step)],
                     trained=[(g, ADAM_SLOTS), (d, ADAM_SLOTS)], data_bytes=data)


@lru_cache(maxsize=None)
def _cgan_generator(z_dim: int, resolution: int, width: int, classes: int,
                    batch: int) -> StepCost:
    g, _ = _cgan(z_dim, resolution, width, classes)
    return _generator_part(g, lambda: (torch.randn(batch, z_dim),
                                       torch.randint(classes, (batch,))))


@workload("plg")
def plg(cfg: Config, s: Setting) -> list[Phase]:
    net = (cfg.z_dim, cfg.resolution, cfg.width, s.num_classes)

    def prior() -> StepCost:
        gan = _cgan_step(*net, cfg.gan_batch_size, cfg.n_dis, s.aux_bytes(cfg.resolution))
        return combine(gan, target_pass(s, cfg.gan_batch_size, cfg.resolution, True))

    def invert() -> StepCost:
        return combine(_cgan_generator(*net, cfg.batch_size),
                       target_pass(s, cfg.batch_size * cfg.augmentations, cfg.resolution,
                                   True))

    share = ("prior-plg", whole_config(cfg), s.target)
    return [
        target_queries(s, s.aux_images, cfg.resolution, label="pseudo-labels", role="prior",
                       share=(*share, "labels")),
        Phase("cGAN prior", "prior", cfg.gan_steps, prior, share=share),
        Phase("invert", "attack", batches(s.generated, cfg.batch_size) * cfg.iterations, invert),
    ]


# --- PPA and IF-GMI ---------------------------------------------------------------------------

@lru_cache(maxsize=None)
def _stylegan(key: tuple) -> nn.Module:
    cfg = StyleGANPriorConfig(**dict(key))
    return on_meta(lambda: StyleGAN(cfg.z_dim, cfg.w_dim, cfg.mapping_layers, cfg.resolution,
                                    cfg.channel_base, cfg.channel_max))


@lru_cache(maxsize=None)
def _stylegan_step(key: tuple, data: int) -> StepCost:
    cfg = StyleGANPriorConfig(**dict(key))
    g, c = _stylegan(key), on_meta(lambda: make_critic(cfg))
    n, res = math.ceil(cfg.gan_batch_size / cfg.gan_accumulate), cfg.resolution  # micro-batch

    def critic_step() -> torch.Tensor:
        fake = g(torch.randn(n, cfg.z_dim)).detach()       # as train_stylegan does
        return c(fake).mean() + c(torch.rand(n, 3, res, res)).mean()

    micro = step_cost([Pass(critic_step), _penalty(c, n, res),
                       Pass(lambda: c(g(torch.randn(n, cfg.z_dim))).mean())],
                      trained=[(g, ADAM_SLOTS), (c, ADAM_SLOTS)], data_bytes=data)
    return scaled(micro, math.ceil(cfg.gan_batch_size / n))    # accumulated micro-batches


@lru_cache(maxsize=None)
def _stylegan_search(key: tuple, batch: int) -> StepCost:
    g = _stylegan(key)

    def run() -> None:
        with torch.no_grad():
            g.image(g.synthesise(g.map(torch.randn(batch, g.z_dim))))
    return step_cost([Pass(run)], frozen=[g])


@lru_cache(maxsize=None)
def _stylegan_render(key: tuple, batch: int) -> StepCost:
    g = _stylegan(key)
    return _generator_part(g.render, lambda: (torch.randn(batch, g.w_dim),), frozen=g)


def _stylegan_phases(cfg: Config, s: Setting, optimisation_steps: int) -> list[Phase]:
    """The shared prior, PPA's candidate search and the optimisation of w (``steps`` per
    batch), the common part of PPA and IF-GMI."""
    key = frozen_key(cfg, tuple(StyleGANPriorConfig.field_names()))
    side = max(1, round(cfg.resolution * cfg.crop))
    b, part = cfg.batch_size, math.ceil(cfg.batch_size / cfg.parts)   # optimised in parts

    def search() -> StepCost:
        return combine(_stylegan_search(key, b), target_pass(s, 2 * b, side, False))

    def optimise() -> StepCost:
        return combine(_stylegan_render(key, part), target_pass(s, part, side, True))

    steps = max(1, math.ceil(cfg.gan_epochs * s.aux_images / cfg.gan_batch_size))
    return [       # training keeps the aux split at its own size, resizing batch by batch
        Phase("StyleGAN prior", "prior", steps,
              lambda: _stylegan_step(key, s.aux_bytes(s.world_resolution)),
              share=("prior-stylegan", key)),
        Phase("candidate search", "attack", batches(cfg.search_space, b), search),
        Phase("optimise w", "attack", batches(s.generated, part) * optimisation_steps,
              optimise),
    ]


@workload("ppa")
def ppa(cfg: Config, s: Setting) -> list[Phase]:
    # outputs come back at most at the target's side (w_space.fit_to_target); select() moves
    # FORWARD_BATCH of them to the device at a time
    side = min(round(cfg.resolution * cfg.crop),
               target_network(s.target, s.preset, s.num_classes).resolution)
    final = target_queries(s, s.generated * cfg.final_draws, max(1, side),
                           label="final selection")
    held = min(s.generated, FORWARD_BATCH) * 3 * side * side * 4
    return [*_stylegan_phases(cfg, s, cfg.iterations),
            Phase(final.label, "attack", final.steps, lambda: with_data(final.cost(), held),
                  note=f"{FORWARD_BATCH} outputs on the device at a time")]


@workload("ifgmi")
def ifgmi(cfg: Config, s: Setting) -> list[Phase]:
    side = max(1, round(cfg.resolution * cfg.crop))
    phases = _stylegan_phases(cfg, s, sum(cfg.stage_steps))
    search, prior_phase, optimise = phases[1], phases[0], phases[2]
    return [prior_phase, search,
            Phase("layer-wise stages", "attack", optimise.steps, optimise.cost,
                  note="every stage counted as a full synthesis (upper bound)"),
            target_queries(s, s.generated * len(cfg.stage_steps), side, label="stage scores")]
