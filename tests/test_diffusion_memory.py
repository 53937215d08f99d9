"""Issue 17, memory of the diffusion attacks: gradient accumulation gives the full batch's
update, chunked Diff-MI steps give the unchunked results, and FGMIA never makes the whole aux
split float."""

from __future__ import annotations

import pytest
import torch
from test_devices import ACCELERATOR, DeviceContext, EmulatedAccelerator
from test_fgmia import ColourHead
from torch.optim.optimizer import register_optimizer_step_pre_hook

from mibench.access import QueryLedger, view_for
from mibench.attack import AttackContext
from mibench.attacks.diffmi import DiffMI, DiffMIConfig
from mibench.attacks.fgmia import FGMIA, FGMIAConfig
from mibench.attacks.priors.diffusion import (ConditionalDenoiser, micro_batches,
                                              noise_scheduler, train_denoiser)
from mibench.precision import LossScaler
from mibench.testing import colour_aux, toy_context
from mibench.world import Split


@pytest.fixture
def ctx(cache) -> AttackContext:
    return toy_context(cache=cache, aux=colour_aux(48), fingerprint="colours",
                       aux_fingerprint="colours")


def test_micro_batches_cover_the_batch_once():
    assert micro_batches(10, 4) == [slice(0, 4), slice(4, 8), slice(8, 10)]
    assert micro_batches(10, 0) == micro_batches(10, 10) == micro_batches(10, 32) == [
        slice(0, 10)]


def _tiny_denoiser() -> ConditionalDenoiser:
    torch.manual_seed(0)
    return ConditionalDenoiser(sample_size=4, channels=2, condition_dim=3,
                               block_channels=(8, 16), attention=(True, True),
                               layers_per_block=1, token_dim=4)


def _step_gradients(ctx: AttackContext, micro_batch: int) -> list[torch.Tensor]:
    """The (clipped) gradients the optimiser steps on in one training step."""
    model = _tiny_denoiser()
    data = torch.randn(12, 2, 4, 4, generator=torch.Generator().manual_seed(1))
    stepped: list[torch.Tensor] = []
    hook = register_optimizer_step_pre_hook(
        lambda optimiser, args, kwargs: stepped.extend(
            p.grad.clone() for group in optimiser.param_groups for p in group["params"]))
    try:
        train_denoiser(model, ctx, samples=lambda index, gen: data[index],
                       conditions=torch.eye(3)[torch.arange(12) % 3], steps=1, batch_size=6,
                       lr=1e-2, warmup=1, weight_decay=0.0, betas=(0.9, 0.999),
                       max_ema_decay=0.9, condition_dropout=0.2, prediction="v_prediction",
                       micro_batch=micro_batch)
    finally:
        hook.remove()
    return stepped


def test_one_accumulated_step_equals_one_full_batch_step(ctx):
    """Micro-batches of 4 + 2 step on the gradient of the batch of 6 (Adam's first step is
    ±lr wherever a gradient is only rounding noise, so the gradients are compared)."""
    full, accumulated = _step_gradients(ctx, 0), _step_gradients(ctx, 4)
    assert len(full) == len(accumulated) == len(list(_tiny_denoiser().parameters()))
    assert max(g.abs().max() for g in full) > 1e-3
    for whole, summed in zip(full, accumulated):
        assert torch.allclose(whole, summed, atol=1e-6, rtol=0)


def _diffmi(ctx: AttackContext, **overrides) -> DiffMI:
    attack = DiffMI(DiffMIConfig.resolve("smoke", {"pgd": False, **overrides}))
    attack.prepare(ctx)
    return attack


def test_chunked_cfg_reconstruction_equals_unchunked(ctx):
    attack = _diffmi(ctx, steps=3, augmentations=2)
    labels = torch.tensor([0, 1, 2, 0, 1])
    whole = attack._reconstruct(ctx.target, labels, ctx.generator(3))
    attack.config.attack_micro_batch = 2
    chunked = attack._reconstruct(ctx.target, labels, ctx.generator(3))
    assert torch.allclose(whole, chunked, atol=1e-5, rtol=0)


def test_finetuning_micro_batches_accumulate_the_full_step_gradient(ctx):
    attack = _diffmi(ctx, ft_classes=3, ft_augment=False)
    prior, cfg = attack.prior, attack.config
    scheduler = noise_scheduler(prior.autoencoder is None, cfg.prediction)
    scheduler.set_timesteps(cfg.ft_sampler_steps)
    model, middle = prior.denoiser, prior.denoiser.unet.mid_block
    x = torch.randn(3, model.channels, model.sample_size, model.sample_size,
                    generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([2, 0, 1])
    results = []
    for micro in (0, 1):
        attack.config.ft_micro_batch = micro
        model.zero_grad(set_to_none=True)
        middle.requires_grad_(True)
        hit = attack._finetune_backward(prior, ctx.target, x, labels, scheduler,
                                        ctx.generator(0), LossScaler("cpu"))
        results.append((hit, [p.grad.clone() for p in middle.parameters()]))
        middle.requires_grad_(False)
    (hit_whole, grads_whole), (hit_chunked, grads_chunked) = results
    assert torch.allclose(hit_whole, hit_chunked, atol=1e-6)
    assert any(g.abs().max() > 0 for g in grads_whole)
    for whole, chunked in zip(grads_whole, grads_chunked):
        assert torch.allclose(whole, chunked, atol=1e-6, rtol=1e-4)


def test_fgmia_prior_never_makes_the_whole_aux_split_float(cache, monkeypatch):
    """Every uint8 → float conversion during the prior's training (conditions, autoencoder,
    denoiser) is at most a batch: FORWARD_BATCH (256) images, of an aux split of 300."""
    ctx = toy_context(cache=cache, aux=colour_aux(300), fingerprint="colours-300",
                      aux_fingerprint="colours-300")
    largest = []
    to_float = torch.Tensor.float

    def recorded(tensor: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        if tensor.dtype == torch.uint8:
            largest.append(len(tensor))
        return to_float(tensor, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "float", recorded)
    FGMIA(FGMIAConfig.resolve("smoke", {"resolution": 16})).prepare(ctx)
    assert largest and max(largest) < len(ctx.aux.images)


def test_micro_batched_diffmi_runs_on_the_emulated_accelerator(cache):
    """Accumulation in pre-training and fine-tuning and the chunked reconstruction keep every
    tensor on the device (CUDA's device-mixing errors, emulated)."""
    gen = torch.Generator().manual_seed(0)
    aux = Split("aux", (torch.rand(48, 3, 16, 16, generator=gen) * 255).to(torch.uint8),
                torch.arange(48) % 6, torch.arange(48) % 6 + 100)
    cfg = DiffMIConfig.resolve("smoke", {"micro_batch": 5, "ft_micro_batch": 1,
                                         "attack_micro_batch": 1, "train_steps": 2,
                                         "ae_steps": 2, "steps": 2, "pgd_steps": 1})
    with EmulatedAccelerator():
        ledger = QueryLedger()
        ctx = DeviceContext(aux=aux, cache=cache, device=ACCELERATOR, seed=0, ledger=ledger,
                            target=view_for("whitebox", ColourHead().to(ACCELERATOR), ledger),
                            data_fingerprint="toy", aux_fingerprint="toy",
                            show_progress=False)
        attack = DiffMI(cfg)
        attack.prepare(ctx)
        labels = torch.tensor([0, 1, 2])
        with ledger.scope(labels):
            images = attack.invert(ctx.target, labels.to(ACCELERATOR), ctx)
    assert images.shape == (3, 3, 16, 16)
