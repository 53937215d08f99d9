"""A StyleGAN2-style generator: the W-space prior of PPA and IF-GMI (attacks.md §2.2, §6.2).

Structure (Karras et al., CVPR 2020): a mapping MLP z → w (pixel-normalised z, equalised
learning rate, 0.01 learning-rate multiplier) with a running mean ``w_avg`` for truncation; a
synthesis network of blocks from a learned 4×4 constant up to ``resolution``, each block two
modulated/demodulated 3×3 convolutions (the first of a non-initial block upsamples ×2) and a
modulated 1×1 ToRGB whose outputs are summed across resolutions (the "skip" generator). Every
convolution has its own style input, so ``num_ws = 2 · blocks`` (18 at 1024 px, as in
StyleGAN2). The synthesis can start at any block from a supplied state and stop after any
block, which is what IF-GMI optimises (``synthesise(ws, start, state, stop)``).

Simplifications of the prior we train (the default), none of which the attacks depend on:
bilinear upsampling instead of the FIR filters, no per-pixel noise inputs (PPA and IF-GMI fix
the noise anyway, ``noise_mode="const"``), an extra 4×4 convolution in the first block, no
style mixing or path-length regularisation, and images are ``sigmoid(rgb)`` so they lie in
[0, 1] like every image in mibench. The discriminator is StyleGAN2's residual one
(``priors/stylegan_critic.py``, ``critic="resnet"``, the ``paper`` default) or the DCGAN critic
(``priors/dcgan.py``, ``critic="dcgan"``, kept by ``smoke`` and ``mini``).

``paper`` trains at 128 px (issue 17): the aux faces are 112 px, so 128 is the smallest
StyleGAN side that holds them without inventing detail (256 px would be a 2.3× up-sampling; 1024
px, StyleGAN2's FFHQ size, a 377 GB resize of the aux split and a 1.1 B-parameter DCGAN critic).
Training reads the aux split batch by batch (``ctx.aux_batch``: only the sampled images are
resized, on the device), under the run's precision policy (``mibench/precision.py``) except the
real images' critic pass, which carries the R1 penalty's double backward and runs in fp32.

``faithful=True`` runs the synthesis exactly as StyleGAN2 does, so that imported pretrained
weights (``priors/stylegan_import.py``) mean what they meant: FIR [1, 3, 3, 1] up-sampling
(``priors/fir.py``) of the up-sampling convolutions and of the skip image, constant noise maps
``noise_const`` scaled by the learned ``noise_strength`` (``noise_mode="const"``), a first
block with the constant and one convolution (styles indexed as NVLabs' ``SynthesisBlock``: a
ToRGB shares its style with the next block's first convolution), activations clamped to
±``conv_clamp`` (stylegan2-ada), and images (rgb + 1)/2 clamped to [0, 1].

The default sizes (z, w 512; 8 mapping layers; channels min(512, 32768/res)) are StyleGAN2
config F at 128 px; presets scale them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from mibench import precision
from mibench.access import TargetView
from mibench.attack import AttackContext
from mibench.attacks.augment import center_crop
from mibench.attacks.priors.cached import cached_module
from mibench.attacks.priors.dcgan import Critic
from mibench.attacks.priors.equalised import EqualLinear, leaky_relu
from mibench.attacks.priors.fir import fir_upsample, upsample_conv
from mibench.attacks.priors.stylegan_critic import ResidualCritic
from mibench.config import Config, param
from mibench.selection import top_k_per_identity

CRITICS = ("resnet", "dcgan")
KEYLESS = {"critic": "dcgan", "gan_accumulate": 1}
"""Prior fields left out of the cache key at these values: keys from before the fields."""
SEARCH_SEED = 7919  # generator offset of the candidate search, apart from per-batch seeds
State = tuple[torch.Tensor, torch.Tensor | None]
"""What flows between synthesis blocks: (features, accumulated RGB skip image or None)."""


class ModulatedConv(nn.Module):
    """Conv whose input channels are scaled by a style from w, then (optionally) demodulated.

    Computed by scaling the activations rather than the weights (StyleGAN2's non-fused path):
    the same result with one ordinary convolution for the whole batch. ``noise_side`` > 0
    adds StyleGAN2's constant noise map (side × side) times a learned strength before the
    bias; ``fir`` up-samples as StyleGAN2 does; ``clamp`` bounds the output to ±clamp.
    """

    def __init__(self, c_in: int, c_out: int, w_dim: int, kernel: int, *,
                 demodulate: bool = True, upsample: bool = False, activate: bool = True,
                 noise_side: int = 0, fir: bool = False, clamp: float | None = None) -> None:
        super().__init__()
        self.affine = EqualLinear(w_dim, c_in, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(c_out, c_in, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(c_out))
        self.scale = 1 / math.sqrt(c_in * kernel * kernel)
        self.demodulate, self.upsample, self.activate = demodulate, upsample, activate
        self.fir, self.clamp = fir, clamp
        self.noise_strength: nn.Parameter | None = None
        if noise_side:
            self.register_buffer("noise_const", torch.zeros(noise_side, noise_side))
            self.noise_strength = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        style = self.affine(w)
        weight = self.weight * self.scale
        if self.upsample and not self.fir:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        x = x * style[:, :, None, None]
        if self.upsample and self.fir:
            x = upsample_conv(x, weight)
        else:
            x = F.conv2d(x, weight, padding=weight.shape[-1] // 2)
        if self.demodulate:
            energy = style.pow(2) @ weight.pow(2).sum(dim=(2, 3)).t()
            x = x * torch.rsqrt(energy + 1e-8)[:, :, None, None]
        if self.noise_strength is not None:
            x = x + self.noise_strength * self.noise_const
        x = x + self.bias[None, :, None, None]
        if self.activate:
            x = leaky_relu(x)
        return x if self.clamp is None else x.clamp(-self.clamp, self.clamp)


class SynthesisBlock(nn.Module):
    """conv0 (upsampling unless first) → conv1 → ToRGB added to the upsampled skip image.

    Faithful (StyleGAN2's layout): the first block has no conv0, convolutions carry noise maps
    of the block's ``side``, resampling uses the FIR filter. The block consumes the styles it is
    given in order (conv0, conv1) and gives ToRGB the last one."""

    def __init__(self, c_in: int, c_out: int, w_dim: int, first: bool, *, side: int = 4,
                 faithful: bool = False, clamp: float | None = None) -> None:
        super().__init__()
        layer = {"noise_side": side if faithful else 0, "fir": faithful, "clamp": clamp}
        self.const = nn.Parameter(torch.randn(c_in, 4, 4)) if first else None
        self.conv0 = (None if faithful and first else
                      ModulatedConv(c_in, c_out, w_dim, 3, upsample=not first, **layer))
        self.conv1 = ModulatedConv(c_out, c_out, w_dim, 3, **layer)
        self.to_rgb = ModulatedConv(c_out, 3, w_dim, 1, demodulate=False, activate=False,
                                    clamp=clamp)
        self.faithful = faithful

    def forward(self, state: State | None, ws: torch.Tensor) -> State:
        if self.const is not None:
            x, skip = self.const.expand(len(ws), -1, -1, -1), None
        else:
            x, skip = state
        if self.conv0 is not None:
            x, ws = self.conv0(x, ws[:, 0]), ws[:, 1:]
        x = self.conv1(x, ws[:, 0])
        rgb = self.to_rgb(x, ws[:, -1])
        if skip is not None:
            rgb = rgb + (fir_upsample(skip) if self.faithful else
                         F.interpolate(skip, scale_factor=2, mode="bilinear",
                                       align_corners=False))
        return x, rgb


def channels(resolution: int, channel_base: int, channel_max: int) -> int:
    """StyleGAN2's channel rule: min(channel_max, channel_base / resolution)."""
    return max(1, min(channel_max, channel_base // resolution))


class StyleGAN(nn.Module):
    """Mapping + synthesis; ``forward(z)`` samples images in [0, 1] (what the GAN loss trains).

    ``faithful`` and ``conv_clamp`` select StyleGAN2's exact synthesis (module docstring); the
    importer sets them, training uses the defaults."""

    def __init__(self, z_dim: int = 512, w_dim: int = 512, mapping_layers: int = 8,
                 resolution: int = 1024, channel_base: int = 32768,
                 channel_max: int = 512, w_avg_beta: float = 0.995, *,
                 faithful: bool = False, conv_clamp: float | None = None) -> None:
        super().__init__()
        levels = math.log2(resolution)
        if resolution < 8 or not levels.is_integer():
            raise ValueError(f"StyleGAN resolution must be a power of two ≥ 8, got {resolution}")
        self.z_dim, self.w_dim, self.resolution, self.w_avg_beta = (z_dim, w_dim, resolution,
                                                                     w_avg_beta)
        self.faithful = faithful
        dims = [z_dim] + [w_dim] * mapping_layers
        self.mapping = nn.Sequential(*[EqualLinear(a, b, lr_multiplier=0.01, activate=True)
                                       for a, b in zip(dims[:-1], dims[1:])])
        sides = [2 ** i for i in range(2, int(levels) + 1)]
        sizes = [channels(s, channel_base, channel_max) for s in sides]
        self.blocks = nn.ModuleList(
            SynthesisBlock(sizes[max(i - 1, 0)], sizes[i], w_dim, first=i == 0, side=sides[i],
                           faithful=faithful, clamp=conv_clamp)
            for i in range(len(sides)))
        self.num_ws = 2 * len(self.blocks)
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def map(self, z: torch.Tensor, psi: float = 1.0, cutoff: int | None = None) -> torch.Tensor:
        """z → ws (N × num_ws × w_dim); truncation w_avg + ψ(w − w_avg) on the first
        ``cutoff`` style inputs (all when None)."""
        z = z * torch.rsqrt(z.pow(2).mean(dim=1, keepdim=True) + 1e-8)
        w = self.mapping(z)
        if self.training:
            self.w_avg.copy_(w.detach().mean(0).to(self.w_avg.dtype).lerp(self.w_avg,
                                                                      self.w_avg_beta))
        ws = w[:, None].repeat(1, self.num_ws, 1)
        if psi != 1:
            cut = self.num_ws if cutoff is None else cutoff
            ws[:, :cut] = self.w_avg.lerp(ws[:, :cut], psi)
        return ws

    def synthesise(self, ws: torch.Tensor, start: int = 0, state: State | None = None,
                   stop: int | None = None) -> State:
        """Run blocks ``start`` … ``stop − 1`` (default: to the end) on ``state``, the output of
        block ``start − 1`` (None when starting at block 0)."""
        for i in range(start, len(self.blocks) if stop is None else stop):
            first = 2 * i - (1 if self.faithful and i > 0 else 0)   # conv0 shares ToRGB's w
            state = self.blocks[i](state, ws[:, first:2 * i + 2])
        return state

    def image(self, state: State) -> torch.Tensor:
        """The final state's RGB as an image in [0, 1]: sigmoid, or (rgb + 1)/2 clamped when
        faithful (StyleGAN2 images lie in [−1, 1])."""
        if self.faithful:
            return state[1].add(1).div(2).clamp(0, 1)
        return torch.sigmoid(state[1])

    def broadcast(self, w: torch.Tensor) -> torch.Tensor:
        """One w per sample (N × w_dim) → the same w at every style input (PPA's single_w)."""
        return w[:, None].expand(-1, self.num_ws, -1)

    def render(self, w: torch.Tensor) -> torch.Tensor:
        """Images of single w's (N × w_dim)."""
        return self.image(self.synthesise(self.broadcast(w)))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.image(self.synthesise(self.map(z)))


def candidate_search(prior: StyleGAN, target: TargetView, labels: torch.Tensor,
                     cfg: "CandidateSearchConfig", ctx: AttackContext) -> torch.Tensor:
    """PPA's initial selection (attacks.md §2.3.1; IF-GMI reuses it): map ``search_space``
    seeded z's with truncation, score every image by the target's softmax averaged over the
    image and its mirror, and give each entry of ``labels`` one of its identity's best distinct
    w's. Returns N × w_dim: the first style input, which PPA broadcasts (``single_w``). The
    mapping runs in fp32, synthesis and target under the run's autocast."""
    generator = ctx.generator(SEARCH_SEED)
    z = torch.randn(cfg.search_space, prior.z_dim, device=ctx.device, generator=generator)
    ws, scores = [], []
    with torch.no_grad():
        for start in range(0, cfg.search_space, cfg.batch_size):
            batch = prior.map(z[start:start + cfg.batch_size], cfg.truncation_psi,
                              cfg.truncation_cutoff)
            with precision.autocast(ctx.device):
                images = center_crop(prior.image(prior.synthesise(batch)), cfg.crop)
                probs = target.probs(images) + target.probs(images.flip(-1))
            scores.append(probs.float() / 2)         # stays on the device: no per-batch sync
            ws.append(batch[:, 0])
    picks = top_k_per_identity(torch.cat(scores).cpu(), labels.cpu())
    return torch.cat(ws)[picks.to(z.device)]


@dataclass
class StyleGANPriorConfig(Config):
    """The prior's fields. PPA and IF-GMI inherit them, so both load one cached prior.

    PPA and IF-GMI use NVLabs' pre-trained FFHQ StyleGAN2 (importable: ``stylegan_checkpoint``);
    by default we train ours on the aux split with StyleGAN2's objective and config-F optimiser
    values (25,000 kimg over FFHQ's 70,000 images is about 350 epochs)."""

    z_dim: int = param(512, "prior latent dimension", ge=1)
    w_dim: int = param(512, "W-space dimension", ge=1)
    mapping_layers: int = param(8, "layers of the mapping network", ge=1)
    resolution: int = param(128, "generator output side (power of two; 128 holds the 112 px "
                            "aux faces)", ge=8)
    channel_base: int = param(32768, "synthesis channels = min(channel_max, base / side)", ge=1)
    channel_max: int = param(512, "most channels of a synthesis block", ge=1)
    critic: str = param("resnet", "discriminator: StyleGAN2's residual one or the DCGAN "
                        "critic", choices=CRITICS)
    critic_width: float = param(1.0, "channel multiplier of the discriminator", gt=0)
    gan_epochs: float = param(350.0, "passes over the aux split", gt=0)
    gan_batch_size: int = param(32, "training batch size", ge=2)
    gan_accumulate: int = param(2, "micro-batches per training batch (gradient accumulation, "
                                "for 24 GB)", ge=1)
    gan_lr: float = param(0.002, "Adam learning rate of the generator", gt=0)
    critic_lr: float = param(0.002, "Adam learning rate of the discriminator", gt=0)
    gan_betas: tuple[float, ...] = param((0.0, 0.99), "Adam betas")
    r1_gamma: float = param(10.0, "R1 penalty weight γ", ge=0)

    presets: ClassVar[Mapping[str, Mapping[str, Any]]] = {
        "smoke": {"z_dim": 16, "w_dim": 16, "mapping_layers": 2, "resolution": 16,
                  "channel_base": 128, "channel_max": 16, "critic": "dcgan",
                  "critic_width": 0.125, "gan_epochs": 2.0, "gan_accumulate": 1},
        "mini": {"z_dim": 128, "w_dim": 128, "mapping_layers": 2, "resolution": 64,
                 "channel_base": 512, "channel_max": 32, "critic": "dcgan",
                 "critic_width": 0.25, "gan_epochs": 30.0, "r1_gamma": 1.0,
                 "gan_accumulate": 1},
    }


@dataclass
class CandidateSearchConfig(StyleGANPriorConfig):
    """Fields of PPA's initial selection, shared by PPA and IF-GMI (not part of the prior's
    cache key), and the pretrained generator that replaces the trained prior when given
    (``priors/stylegan_import.py``: its sizes then come from the file)."""

    search_space: int = param(2000, "z's scored in the initial selection", ge=1)
    truncation_psi: float = param(0.5, "truncation ψ of the search", ge=0, le=1)
    truncation_cutoff: int = param(8, "style inputs truncated (8 of 18 at 1024 px, of 12 at "
                                   "128 px: the blocks up to 32 px either way)", ge=0)
    crop: float = param(0.78125, "centre-crop fraction before the target (PPA's 800 of 1024, "
                        "100 of 128 px)", gt=0, le=1)
    batch_size: int = param(64, "candidates scored or optimised together", ge=1)
    parts: int = param(2, "optimise each batch in this many parts, one after the other (for "
                       "24 GB; candidates are independent, see w_space)", ge=1)
    stylegan_checkpoint: str = param("", "pretrained StyleGAN2 generator to import (NVLabs "
                                     ".pkl or rosinality .pt); empty: train our own prior")

    presets: ClassVar[Mapping[str, Mapping[str, Any]]] = {
        "smoke": {**StyleGANPriorConfig.presets["smoke"], "search_space": 16,
                  "truncation_cutoff": 3, "crop": 1.0, "parts": 1},
        "mini": {**StyleGANPriorConfig.presets["mini"], "search_space": 500,
                 "truncation_cutoff": 4, "crop": 1.0, "parts": 1},
    }


def train_stylegan(generator: StyleGAN, critic: nn.Module, ctx: AttackContext, *,
                   epochs: float, batch_size: int, lr: float, betas: tuple[float, float],
                   critic_lr: float, r1_gamma: float, parts: int = 1) -> None:
    """StyleGAN2's objective: the non-saturating logistic loss with an R1 penalty
    (γ/2)·E‖∇D(x)‖² on real images; one critic and one generator step per real batch, each
    batch's gradients accumulated over ``parts`` micro-batches (minibatch-stddev groups stay
    within a micro-batch, as within one GPU's share in StyleGAN2).

    Each step reads just its real batch (``ctx.aux_batch``). Generator and fake-image critic
    passes run under the run's autocast; the real images' critic pass, whose input gradient is
    the R1 penalty (a double backward, fragile in bf16/fp16), runs in fp32. No host syncs per
    step (the last losses are logged once)."""
    gen = ctx.generator(0)
    critic = critic.to(ctx.device).train()
    generator.train()
    opt_g = torch.optim.Adam(generator.parameters(), lr=lr, betas=betas)
    opt_d = torch.optim.Adam(critic.parameters(), lr=critic_lr, betas=betas)
    scaler_g, scaler_d = precision.LossScaler(ctx.device), precision.LossScaler(ctx.device)
    images = len(ctx.aux.images)
    steps = max(1, math.ceil(epochs * images / batch_size))
    micro = math.ceil(batch_size / parts)
    rows = [slice(start, start + micro) for start in range(0, batch_size, micro)]

    def part(loss: torch.Tensor) -> torch.Tensor:
        return loss if len(rows) == 1 else loss / len(rows)

    for _ in ctx.progress(range(steps), desc="StyleGAN prior", unit="step"):
        index = torch.randint(images, (batch_size,), device=ctx.device, generator=gen)
        z = torch.randn(batch_size, generator.z_dim, device=ctx.device, generator=gen)
        opt_d.zero_grad(set_to_none=True)
        for r in rows:
            real = ctx.aux_batch(index[r], generator.resolution).float().div_(255)
            real_score = critic(real.requires_grad_(True))
            grad, = torch.autograd.grad(real_score.sum(), real, create_graph=True)
            with precision.autocast(ctx.device):
                fake_score = critic(generator(z[r]).detach())
            loss_d = (F.softplus(fake_score.float()).mean() + F.softplus(-real_score).mean()
                      + r1_gamma / 2 * grad.flatten(1).pow(2).sum(1).mean())
            scaler_d.backward(part(loss_d))
        scaler_d.apply(opt_d)
        z = torch.randn(batch_size, generator.z_dim, device=ctx.device, generator=gen)
        opt_g.zero_grad(set_to_none=True)
        for r in rows:
            with precision.autocast(ctx.device):
                fake_score = critic(generator(z[r]))
            loss_g = F.softplus(-fake_score.float()).mean()
            scaler_g.backward(part(loss_g))
        scaler_g.apply(opt_g)
    ctx.log.debug("StyleGAN prior: last losses d %.3f, g %.3f", loss_d.item(), loss_g.item())
    generator.eval()


def make_critic(cfg: StyleGANPriorConfig) -> nn.Module:
    """The discriminator ``cfg.critic`` names, its channels scaled by ``critic_width``."""
    if cfg.critic == "dcgan":
        return Critic(cfg.resolution, cfg.critic_width)
    return ResidualCritic(cfg.resolution, max(1, round(cfg.channel_base * cfg.critic_width)),
                          max(1, round(cfg.channel_max * cfg.critic_width)))


def load_stylegan(ctx: AttackContext, cfg: StyleGANPriorConfig) -> StyleGAN:
    """The StyleGAN prior of ``cfg``, trained on the aux split once and cached."""
    prior_config = {k: v for k, v in cfg.to_dict().items()
                    if k in StyleGANPriorConfig.field_names()
                    and not (k in KEYLESS and KEYLESS[k] == v)}

    def make() -> nn.ModuleDict:
        return nn.ModuleDict({
            "generator": StyleGAN(cfg.z_dim, cfg.w_dim, cfg.mapping_layers, cfg.resolution,
                                  cfg.channel_base, cfg.channel_max),
            "critic": make_critic(cfg)})

    def train(prior: nn.Module) -> None:
        train_stylegan(prior["generator"], prior["critic"], ctx, epochs=cfg.gan_epochs,
                       batch_size=cfg.gan_batch_size, lr=cfg.gan_lr, betas=tuple(cfg.gan_betas),
                       critic_lr=cfg.critic_lr, r1_gamma=cfg.r1_gamma,
                       parts=cfg.gan_accumulate)

    prior = cached_module(ctx, "prior-stylegan", prior_config, make, train)
    return prior["generator"].requires_grad_(False)
