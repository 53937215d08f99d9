"""Issue 18.4: a latent's update does not depend on how the samples are batched. ``descend``
steps on the sum of per-sample losses; GMI's SGD takes lr / 100 per sample (its official batch
of 100, averaged); the Adam attacks hand ``descend`` one loss per sample."""

from __future__ import annotations

import pytest
import torch

import mibench.attacks.fmi as fmi
import mibench.attacks.kedmi as kedmi
import mibench.attacks.plg as plg
from mibench.attacks.gmi import GMI, OFFICIAL_BATCH, BoxedNesterov, GMIConfig
from mibench.attacks.latent import descend
from mibench.attacks.priors.dcgan import Critic, Generator
from mibench.registry import ATTACKS
from mibench.testing import colour_aux, toy_context


def small_gmi(iterations: int = 3) -> GMI:
    attack = GMI(GMIConfig.resolve("smoke", {"iterations": iterations}))
    cfg = attack.config
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        attack.generator = Generator(cfg.z_dim, cfg.resolution, cfg.width).eval()
        attack.critic = Critic(cfg.resolution, cfg.width).eval()
    attack.generator.requires_grad_(False)
    attack.critic.requires_grad_(False)
    return attack


def test_gmi_latents_get_the_same_update_batched_64_64_32_or_160_at_once(ctx):
    attack = small_gmi()
    z0 = torch.randn(160, attack.config.z_dim, generator=torch.Generator().manual_seed(1))
    z0 = z0.clamp(-1, 1)
    labels = torch.arange(160) % ctx.target.num_classes
    whole = attack.descend_from(ctx.target, z0, labels, ctx)
    parts = torch.cat([attack.descend_from(ctx.target, z0[a:b], labels[a:b], ctx)
                       for a, b in ((0, 64), (64, 128), (128, 160))])
    assert not torch.allclose(whole, z0)                  # the latents moved
    assert torch.allclose(parts, whole, atol=1e-6, rtol=0)


def test_gmi_step_is_the_official_batch_mean_step_at_batch_100(ctx):
    """One Nesterov step on the summed loss with lr/100 = the official step on the mean of a
    batch of 100."""
    attack = small_gmi(iterations=1)
    cfg = attack.config
    z0 = torch.randn(OFFICIAL_BATCH, cfg.z_dim,
                     generator=torch.Generator().manual_seed(2)).clamp(-1, 1)
    labels = torch.arange(OFFICIAL_BATCH) % ctx.target.num_classes
    ours = attack.descend_from(ctx.target, z0, labels, ctx)
    z = z0.clone().requires_grad_(True)
    images = attack.generator(z)
    mean = (-attack.critic(images) + cfg.identity_weight
            * attack.identity_loss(ctx.target, images, labels)).mean()
    optimiser = BoxedNesterov([z], lr=cfg.lr, momentum=cfg.momentum, clamp=cfg.clamp)
    mean.backward()
    optimiser.step()
    assert torch.allclose(ours, z.detach(), atol=1e-6, rtol=0)


def test_descend_steps_each_sample_on_its_own_loss(ctx):
    """Plain SGD on per-sample losses: chunked or whole, the same latents."""
    centre = torch.tensor([1.0, -2.0])
    start = torch.randn(6, 2, generator=torch.Generator().manual_seed(0))

    def run(rows: slice) -> torch.Tensor:
        x = start[rows].clone().requires_grad_(True)
        descend(torch.optim.SGD([x], lr=0.1), lambda: (x - centre).pow(2).sum(1), 3, ctx, "toy")
        return x.detach()

    whole = run(slice(0, 6))
    assert torch.equal(torch.cat([run(slice(0, 4)), run(slice(4, 6))]), whole)
    assert torch.allclose(whole, centre + (start - centre) * 0.8 ** 3)   # ∇ = 2(x − c)


def _first_loss(module, monkeypatch) -> list[tuple[torch.Tensor, list[torch.Tensor]]]:
    """Replace ``module.descend`` by one that records the first loss and its latents."""
    seen = []

    def record(optimiser, loss, steps, ctx, desc, after_step=None):
        latents = [p for group in optimiser.param_groups for p in group["params"]]
        seen.append((loss(), latents))

    monkeypatch.setattr(module, "descend", record)
    return seen


@pytest.mark.parametrize("module, name", [(plg, "plg"), (kedmi, "kedmi"), (fmi, "fmi")])
def test_adam_attacks_hand_descend_one_loss_per_sample(module, name, cache, monkeypatch):
    """The loss is a vector, entry i depending on latent row i alone, so the summed step of
    ``descend`` is each sample's own (Adam: the official batch mean up to ε)."""
    cls = ATTACKS.get(name)
    attack = cls(cls.Config.resolve("smoke", {"iterations": 1}))
    ctx = toy_context(cache=cache, aux=colour_aux(48), fingerprint=f"batching:{name}")
    attack.prepare(ctx)
    seen = _first_loss(module, monkeypatch)
    labels = torch.tensor([0, 1, 2])
    attack.invert(ctx.target, labels, ctx)
    value, latents = seen[0]
    assert value.shape == (len(labels),)
    grads = torch.autograd.grad(value[0], latents, allow_unused=True)
    for grad in grads:
        assert grad is not None and grad[0].abs().sum() > 0
        assert grad[1:].abs().max() <= 1e-6 * grad[0].abs().max()   # float noise at most
