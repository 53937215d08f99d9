"""Conditional diffusion building blocks shared by the diffusion attacks (FGMIA, Diff-MI, UAMI).

- :class:`ConditionalDenoiser`: a diffusers ``UNet2DConditionModel`` that predicts the noise ε
  of a noisy image (or latent) given a condition vector. The vector is standardised with stored
  statistics and enters **only through cross-attention** as context token(s) of width
  ``token_dim`` — FGMIA's feature guidance (attacks.md §8.3); no class or time-embedding
  conditioning.
- :func:`train_denoiser`: DDPM ε-prediction training (Ho et al., NeurIPS 2020, Eq. 14) with AdamW,
  a cosine learning-rate schedule with warm-up, gradient clipping and an EMA of the weights —
  the diffusers ``train_unconditional`` recipe FGMIA most likely adapted (attacks.md §8.4).
  Condition dropout (p > 0) trains the unconditional branch that classifier-free guidance needs.
- :func:`ddim_sample`: deterministic DDIM sampling (Song et al., ICLR 2021, Eq. 12 with η = 0)
  through diffusers' ``DDIMScheduler``, optionally with classifier-free guidance.

The training and sampling functions take any denoiser with ``context(conditions, batch)``,
``dropped(context, keep)`` and ``forward(x, t, context)``: this UNet, or the class-conditional
ADM UNet of ``priors/class_diffusion.py``.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, UNet2DConditionModel
from torch import nn

from mibench import precision
from mibench.attack import AttackContext
from mibench.attacks.latent import show_losses

TRAIN_TIMESTEPS = 1000


class ConditionalDenoiser(nn.Module):
    """ε-prediction UNet with a vector condition fed through cross-attention.

    ``attention[i]`` puts cross-attention blocks at level ``i`` (the mid-block always has one);
    the condition of size ``condition_dim`` is zero-padded to a multiple of ``token_dim`` and cut
    into ``ceil(condition_dim / token_dim)`` tokens (one 512-d token for a 512-d face feature).
    """

    def __init__(self, *, sample_size: int, channels: int, condition_dim: int,
                 block_channels: Sequence[int], attention: Sequence[bool],
                 layers_per_block: int, token_dim: int, head_dim: int = 8) -> None:
        super().__init__()
        if len(block_channels) != len(attention):
            raise ValueError("block_channels and attention need one entry per UNet level")
        down = tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attention)
        up = tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attention))
        self.unet = UNet2DConditionModel(
            sample_size=sample_size, in_channels=channels, out_channels=channels,
            block_out_channels=tuple(block_channels), down_block_types=down,
            up_block_types=up, layers_per_block=layers_per_block,
            cross_attention_dim=token_dim, attention_head_dim=head_dim,
            norm_num_groups=math.gcd(32, *block_channels))
        self.sample_size = sample_size
        self.channels = channels
        self.condition_dim = condition_dim
        self.token_dim = token_dim
        self.tokens = math.ceil(condition_dim / token_dim)
        self.register_buffer("condition_mean", torch.zeros(condition_dim))
        self.register_buffer("condition_std", torch.ones(condition_dim))

    def set_condition_statistics(self, conditions: torch.Tensor) -> None:
        """Store the per-dimension mean and std of the training conditions."""
        self.condition_mean.copy_(conditions.mean(0))
        self.condition_std.copy_(conditions.std(0).clamp_min(1e-6))

    def context(self, conditions: torch.Tensor | None, batch: int) -> torch.Tensor:
        """Standardised conditions as N×tokens×token_dim; ``None`` is the null (dropped)
        condition, the all-zero context."""
        if conditions is None:
            return self.condition_mean.new_zeros(batch, self.tokens, self.token_dim)
        z = (conditions - self.condition_mean) / self.condition_std
        z = F.pad(z, (0, self.tokens * self.token_dim - self.condition_dim))
        return z.view(len(z), self.tokens, self.token_dim)

    def dropped(self, context: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """``context`` with the null (all-zero) context where ``keep`` is false."""
        return context * keep.view(-1, 1, 1)

    def forward(self, x: torch.Tensor, t: torch.Tensor,
                context: torch.Tensor) -> torch.Tensor:
        return self.unet(x, t, encoder_hidden_states=context).sample


PREDICTIONS = ("epsilon", "v_prediction", "sample")


def noise_scheduler(clip_sample: bool, prediction: str = "epsilon") -> DDIMScheduler:
    """The linear-β DDPM schedule (β 1e-4 → 0.02, T = 1000) in diffusers' DDIM form; ``clip_sample``
    clips the predicted x₀ to [−1, 1] (pixel space only). ``prediction`` is what the network
    outputs: the noise ε (DDPM), v = √ᾱ·ε − √(1−ᾱ)·x₀ (Salimans & Ho, ICLR 2022) or x₀.
    Timesteps are spaced "leading", diffusers' default, which FGMIA's saved pipeline used."""
    return DDIMScheduler(num_train_timesteps=TRAIN_TIMESTEPS, beta_schedule="linear",
                         clip_sample=clip_sample, set_alpha_to_one=True,
                         prediction_type=prediction, timestep_spacing="leading")


def regression_target(x0: torch.Tensor, noise: torch.Tensor, alpha_bar: torch.Tensor,
                      prediction: str) -> torch.Tensor:
    """What the network must output for x_t = √ᾱ·x₀ + √(1−ᾱ)·ε under ``prediction``."""
    if prediction == "epsilon":
        return noise
    if prediction == "v_prediction":
        return alpha_bar.sqrt() * noise - (1 - alpha_bar).sqrt() * x0
    return x0


def predicted_noise(out: torch.Tensor, x_t: torch.Tensor, alpha_bar: torch.Tensor,
                    prediction: str) -> torch.Tensor:
    """The noise ε̂ implied by the network output ``out`` at x_t (inverse of
    :func:`regression_target`)."""
    if prediction == "epsilon":
        return out
    if prediction == "v_prediction":
        return alpha_bar.sqrt() * out + (1 - alpha_bar).sqrt() * x_t
    return (x_t - alpha_bar.sqrt() * out) / (1 - alpha_bar).sqrt()


def ema_decay(step: int, max_decay: float, inv_gamma: float = 1.0, power: float = 0.75) -> float:
    """EMA warm-up of diffusers' ``EMAModel``: 1 − (1 + step/γ)^−p, capped at ``max_decay``."""
    return min(max_decay, 1.0 - (1.0 + step / inv_gamma) ** -power)


def micro_batches(batch: int, micro_batch: int) -> list[slice]:
    """The slices of a ``batch`` cut into micro-batches of ``micro_batch`` (0: one slice)."""
    size = micro_batch if 0 < micro_batch < batch else batch
    return [slice(start, min(start + size, batch)) for start in range(0, batch, size)]


def weighted(loss: torch.Tensor, part: slice, batch: int) -> torch.Tensor:
    """A micro-batch's mean ``loss`` times its share of the ``batch`` (the sum over the parts is
    the batch's mean); unchanged for the whole batch, so an unsplit step runs the same ops."""
    size = part.stop - part.start
    return loss if size == batch else loss * (size / batch)


def clip_to(grad: torch.Tensor, max_norm: torch.Tensor) -> None:
    """``clip_grad_norm_`` of one gradient to a norm held on the device (no host sync), with
    its arithmetic: the factor is min(1, max_norm / (‖grad‖ + 1e-6)) in the gradient's dtype."""
    total = nn.utils.get_total_norm([grad])
    grad.mul_(torch.clamp((total + 1e-6).reciprocal() * max_norm.to(total.dtype), max=1.0))


def train_denoiser(model: nn.Module, ctx: AttackContext, *, samples: Callable[
        [torch.Tensor, torch.Tensor], torch.Tensor], conditions: torch.Tensor, steps: int,
        batch_size: int, lr: float, warmup: int, weight_decay: float,
        betas: tuple[float, float], max_ema_decay: float, condition_dropout: float,
        drop_batch: bool = False, prediction: str = "epsilon", micro_batch: int = 0,
        desc: str = "diffusion prior") -> None:
    """Train ``model`` to predict ε (or v, or x₀: ``prediction``) on ``samples(index,
    generator)`` (x₀ in the model's space) paired with ``conditions[index]``; on return the
    model holds the EMA weights. ``condition_dropout`` nulls each sample's condition, or with
    ``drop_batch`` the whole batch's (ADM); the model's ``dropped(context, keep)`` applies it.

    Each step's ``batch_size`` is drawn at once and back-propagated in micro-batches of
    ``micro_batch`` (0: the whole batch) whose losses are weighted by their share of the batch,
    so the accumulated gradient is the full batch's (gradient accumulation, issue 17). Forward
    passes run under the run's autocast; the loss reaches the host every
    :data:`~mibench.attacks.latent.SHOW_EVERY` steps."""
    gen = ctx.generator(104729)
    schedule = noise_scheduler(clip_sample=False)
    alphas = schedule.alphas_cumprod.to(ctx.device)
    ema = [p.detach().clone() for p in model.parameters()]
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, betas=betas,
                                  weight_decay=weight_decay, eps=1e-8)
    warmup = min(warmup, max(steps // 10, 1))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda s: min(
        (s + 1) / warmup, 0.5 * (1 + math.cos(math.pi * max(s - warmup, 0)
                                             / max(steps - warmup, 1)))))
    scaler = precision.LossScaler(ctx.device)
    parts = micro_batches(batch_size, micro_batch)
    network = precision.compiled(model)
    model.train()
    bar = ctx.progress(range(steps), desc=desc, unit="step")
    for step in bar:
        index = torch.randint(len(conditions), (batch_size,), device=ctx.device, generator=gen)
        x0 = samples(index, gen)
        noise = torch.randn(x0.shape, device=ctx.device, generator=gen)
        t = torch.randint(TRAIN_TIMESTEPS, (batch_size,), device=ctx.device, generator=gen)
        a = alphas[t].view(-1, *[1] * (x0.ndim - 1))
        noisy = a.sqrt() * x0 + (1 - a).sqrt() * noise
        context = model.context(conditions[index], batch_size)
        if condition_dropout > 0:
            draws = 1 if drop_batch else batch_size
            keep = torch.rand(draws, device=ctx.device, generator=gen) >= condition_dropout
            context = model.dropped(context, keep.expand(batch_size))
        target = regression_target(x0, noise, a, prediction)
        optimiser.zero_grad(set_to_none=True)
        total = torch.zeros((), device=ctx.device)
        for part in parts:
            with precision.autocast(ctx.device):
                out = network(noisy[part], t[part], context[part])
            loss = weighted(F.mse_loss(out.float(), target[part]), part, batch_size)
            scaler.backward(loss)
            total += loss.detach()
        scaler.apply(optimiser, 1.0)
        scheduler.step()
        with torch.no_grad():
            torch._foreach_lerp_(ema, [p.detach() for p in model.parameters()],
                                 1.0 - ema_decay(step, max_ema_decay))
        show_losses(bar, step, loss=total)
    with torch.no_grad():
        for p, averaged in zip(model.parameters(), ema):
            p.copy_(averaged)
    model.eval()


def guided_output(model: nn.Module, x: torch.Tensor, t: torch.Tensor,
                  context: torch.Tensor, guidance_scale: float) -> torch.Tensor:
    """The network output at x_t; with w ≠ 1, o(∅) + w·(o(c) − o(∅)) (classifier-free
    guidance), where ``context`` stacks the null context on top of the conditional one. The
    network runs under the run's autocast; the output is fp32."""
    network = precision.compiled(model)
    with precision.autocast(x.device):
        if guidance_scale == 1.0:
            return network(x, t, context).float()
        out = network(torch.cat([x, x]), t, context).float()
    out_null, out_cond = out.chunk(2)
    return out_null + guidance_scale * (out_cond - out_null)


def guidance_context(model: nn.Module, conditions: torch.Tensor,
                     guidance_scale: float) -> torch.Tensor:
    """The context :func:`guided_output` expects for ``conditions``."""
    n = len(conditions)
    context = model.context(conditions, n)
    return context if guidance_scale == 1.0 else torch.cat([model.context(None, n), context])


def ddim_denoise(model: nn.Module, x: torch.Tensor, conditions: torch.Tensor,
                 scheduler: DDIMScheduler, *, generator: torch.Generator,
                 guidance_scale: float = 1.0, eta: float = 0.0,
                 start: int | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """DDIM from x_t over ``scheduler``'s timesteps, with autograd when it is enabled (Diff-MI
    back-propagates through the sampler). From ``start``, the grid's timesteps in (0, start]
    run, the last landing on t = 0 (Diff-MI's ``inverse_ddim``: 10 steps from 100 on a
    100-step grid). Returns x₀ and the predicted x₀ of every step."""
    context = guidance_context(model, conditions, guidance_scale)
    predictions = []
    for t in scheduler.timesteps:
        if start is not None and not 0 < t <= start:
            continue
        out = guided_output(model, x, t.to(x.device), context, guidance_scale)
        step = scheduler.step(out, t, x, eta=eta, generator=generator)
        x = step.prev_sample
        predictions.append(step.pred_original_sample)
    return x, predictions


@torch.no_grad()
def ddim_sample(model: nn.Module, conditions: torch.Tensor, *, steps: int,
                generator: torch.Generator, clip_sample: bool, guidance_scale: float = 1.0,
                eta: float = 0.0, prediction: str = "epsilon") -> torch.Tensor:
    """One sample x₀ per condition row by ``steps``-step DDIM from x_T ~ N(0, I).

    With ``guidance_scale`` w ≠ 1, the output is o(∅) + w·(o(c) − o(∅)) (classifier-free
    guidance; the model must have been trained with condition dropout)."""
    scheduler = noise_scheduler(clip_sample, prediction)
    scheduler.set_timesteps(steps)
    x = torch.randn(len(conditions), model.channels, model.sample_size, model.sample_size,
                    device=conditions.device, generator=generator)
    return ddim_denoise(model, x, conditions, scheduler, generator=generator,
                        guidance_scale=guidance_scale, eta=eta)[0]
