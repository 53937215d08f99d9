"""The attack author's kit (issue 16): chunked, ledger-scoped, seeded inversion; the optimiser
loop with its per-step callback; GMI's boxed Nesterov update; the GAN-prior config block's
cache-key rule; ``ctx.aux_images``."""

from __future__ import annotations

import pytest
import torch

from mibench.attacks.fmi import FMIConfig, FMIPriorConfig
from mibench.attacks.gmi import BoxedNesterov, GMIConfig, GMIPriorConfig
from mibench.attacks.latent import Chunk, descend, invert_in_chunks
from mibench.attacks.losses import cross_entropy
from mibench.attacks.plg import PLGConfig, PLGPriorConfig
from mibench.errors import ConfigError

LABELS = torch.tensor([0, 0, 1, 2, 2])


def test_chunks_are_seeded_by_offset_and_rendered_without_gradients(ctx):
    seen: list[Chunk] = []
    grad_in_search, grad_in_render = [], []

    def search(chunk: Chunk) -> torch.Tensor:
        seen.append(chunk)
        grad_in_search.append(torch.is_grad_enabled())
        return torch.rand(len(chunk.labels), 3, 4, 4, generator=chunk.generator)

    def render(found: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        grad_in_render.append(torch.is_grad_enabled())
        return found + labels[:, None, None, None]

    images = invert_in_chunks(ctx, LABELS, 2, search, render)
    assert [c.rows for c in seen] == [slice(0, 2), slice(2, 4), slice(4, 6)]
    assert [c.labels.tolist() for c in seen] == [[0, 0], [1, 2], [2]]
    assert grad_in_search == [True] * 3 and grad_in_render == [False] * 3
    assert images.shape == (5, 3, 4, 4) and images.device.type == "cpu"
    for start in (0, 2, 4):                          # each chunk: seed + its offset
        n = len(LABELS[start:start + 2])
        expected = torch.rand(n, 3, 4, 4, generator=ctx.generator(start))
        assert torch.equal(images[start:start + n], expected + LABELS[start:start + n,
                                                                      None, None, None])


def test_each_chunk_books_its_queries_to_its_identities(ctx):
    target, steps = ctx.target, 3

    def search(chunk: Chunk) -> torch.Tensor:
        x = torch.rand(len(chunk.labels), 3, 16, 16, generator=chunk.generator)
        x.requires_grad_(True)
        descend(torch.optim.SGD([x], lr=0.1),
                lambda: cross_entropy(target.logits(x), chunk.labels).mean(), steps, ctx, "toy")
        return x.detach()

    invert_in_chunks(ctx, LABELS, 2, search)
    expected = {0: 2 * steps, 1: steps, 2: 2 * steps}     # samples per identity × steps
    assert ctx.ledger.per_identity("forward") == expected
    assert ctx.ledger.per_identity("gradient") == expected
    assert ctx.ledger.total("forward") == ctx.ledger.total("gradient") == len(LABELS) * steps


def test_descend_zeroes_gradients_steps_and_calls_back_after_each_step(ctx):
    x = torch.tensor([1.0, -2.0], requires_grad=True)
    after: list[torch.Tensor] = []
    descend(torch.optim.SGD([x], lr=0.25), lambda: x.pow(2).sum(), 4, ctx, "toy",
            after_step=lambda: after.append(x.detach().clone()))
    # ∇ = 2x, so every SGD step halves x exactly; accumulated gradients would not.
    assert [v.tolist() for v in after] == [[0.5, -1.0], [0.25, -0.5], [0.125, -0.25],
                                           [0.0625, -0.125]]


def test_boxed_nesterov_is_gmis_update():
    """The loop GMI's attack.py runs, written out, against the optimiser."""
    lr, momentum, clamp, steps = 0.3, 0.9, 1.0, 6
    start = torch.tensor([[0.8, -0.4, 0.1], [0.0, 0.9, -0.9]])
    centre = torch.tensor([2.0, -3.0, 0.5])

    def loss_of(z: torch.Tensor) -> torch.Tensor:
        return (z - centre).pow(2).sum(1).mean()

    z, velocity = start.clone(), torch.zeros_like(start)
    for _ in range(steps):
        z.requires_grad_(True)
        grad, = torch.autograd.grad(loss_of(z), z)
        with torch.no_grad():
            previous = velocity
            velocity = momentum * velocity - lr * grad
            z = (z - momentum * previous + (1 + momentum) * velocity).clamp(-clamp, clamp)

    latent = start.clone().requires_grad_(True)
    optimiser = BoxedNesterov([latent], lr=lr, momentum=momentum, clamp=clamp)
    for _ in range(steps):
        optimiser.zero_grad(set_to_none=True)
        loss_of(latent).backward()
        optimiser.step()
    assert torch.equal(latent.detach(), z)
    assert latent.abs().max() <= clamp


@pytest.mark.parametrize("block, config, fields", [
    (GMIPriorConfig, GMIConfig, {"z_dim", "resolution", "width", "gan_epochs", "gan_batch_size",
                                 "gan_lr", "gan_betas", "n_critic", "gp_weight"}),
    (FMIPriorConfig, FMIConfig, {"z_dim", "resolution", "width", "code_hidden", "gan_epochs",
                                 "gan_batch_size", "gan_lr", "gan_betas", "recon_weight",
                                 "eg_steps"}),
    (PLGPriorConfig, PLGConfig, {"top_n", "z_dim", "resolution", "width", "gan_steps",
                                 "gan_batch_size", "gan_lr", "gan_betas", "n_dis", "inv_weight",
                                 "inv_loss", "aug_scale", "aug_flip", "aug_jitter",
                                 "aug_rotation", "train_jitter_p"}),
])
def test_the_prior_is_keyed_by_its_config_class_alone(block, config, fields):
    """The key fields are the ones each attack listed before the shared block (cached priors
    keep their keys); an attack-only field never enters the key."""
    cfg = config.resolve("smoke")
    settings = block.prior_settings(cfg)
    assert set(settings) == fields
    assert settings == {name: getattr(cfg, name) for name in fields}
    assert block.prior_settings(config.resolve("smoke", {"lr": 0.5})) == settings
    assert block.prior_settings(config.resolve("smoke", {"gan_lr": 0.5})) != settings


def test_prior_settings_refuse_another_attacks_config():
    with pytest.raises(ConfigError, match="GMIPriorConfig.prior_settings needs a GMIPriorConfig"):
        GMIPriorConfig.prior_settings(FMIConfig())


def test_aux_images_are_uint8_on_the_device_at_the_asked_side(ctx):
    native = ctx.aux_images(32)
    assert torch.equal(native, ctx.aux.images)
    small = ctx.aux_images(16)
    assert small.shape == (48, 3, 16, 16) and small.dtype == torch.uint8
    assert small.device == ctx.device
    # an antialiased downscale of the mean colour keeps it (up to rounding)
    assert (small.float().mean() - native.float().mean()).abs() < 1.0
