"""Diff-MI at smoke size: p-reg, fine-tuning that touches only the class pathway and the middle
block, exact attack queries, and the final L2 PGD."""

from __future__ import annotations

import pytest
import torch

from mibench.attack import AttackContext
from mibench.attacks.diffmi import DiffMI, DiffMIConfig
from mibench.attacks.priors.pseudo_labels import top_n_pseudo_labels
from mibench.testing import ColourTarget, colour_aux, toy_context


@pytest.fixture
def ctx(cache) -> AttackContext:
    return toy_context(cache=cache, aux=colour_aux(48), fingerprint="colours",
                       aux_fingerprint="colours")


def config(**overrides) -> DiffMIConfig:
    return DiffMIConfig.resolve("smoke", overrides)


def cached_weights(cache, component: str) -> dict[str, torch.Tensor]:
    (path,) = [p for p in (cache.root / component).iterdir() if not p.name.startswith(".")]
    return torch.load(path / "weights.pt", weights_only=True)


def test_p_reg_and_finetuning_touch_only_the_class_pathway_and_middle_block(ctx):
    attack = DiffMI(config())
    attack.prepare(ctx)
    index, labels = top_n_pseudo_labels(ctx.target, ctx.aux.images, 4)
    features = ctx.aux.images[index].float().div(255).mean(dim=(2, 3))
    expected = torch.stack([features[labels == c].mean(0) for c in range(3)])
    assert torch.allclose(attack.p_reg, expected, atol=1e-5)

    before = cached_weights(ctx.cache, "prior-diffmi-pretrain")
    after = cached_weights(ctx.cache, "prior-diffmi")
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all("attn2.to_k" in k or "attn2.to_v" in k or ".mid_block." in k
                           for k in changed)
    assert ctx.ledger.total("gradient") > 0 and set(ctx.ledger.counts["gradient"]) == {"prepare"}


def test_attack_queries_are_exact_and_seeded(ctx):
    cfg = config(steps=3, augmentations=2, pgd_steps=2, attack_batch=4)
    attack = DiffMI(cfg)
    attack.prepare(ctx)
    before = {kind: ctx.ledger.total(kind) for kind in ("forward", "gradient")}
    labels = torch.tensor([0, 0, 1, 2, 2])
    images = attack.invert(ctx.target, labels, ctx)
    assert images.shape == (5, 3, 16, 16) and 0 <= images.min() and images.max() <= 1
    per_sample_gradient = 3 * 2 + 2
    per_sample_forward = 3 * 2 + 2 + 1
    assert ctx.ledger.per_identity("gradient") == {0: 2 * per_sample_gradient,
                                                   1: per_sample_gradient,
                                                   2: 2 * per_sample_gradient}
    assert ctx.ledger.total("forward") - before["forward"] == 5 * per_sample_forward
    assert torch.equal(images, attack.invert(ctx.target, labels, ctx))


def test_pgd_raises_the_target_score_within_the_l2_ball(ctx):
    attack = DiffMI(config(pgd_eps=0.5, pgd_step=0.2, pgd_steps=5))
    images = torch.full((3, 3, 16, 16), 0.5)
    labels = torch.tensor([0, 1, 2])
    out = attack._pgd(ctx.target, images, labels, ctx.generator(0))
    assert (out - images).flatten(1).norm(dim=1).max() <= 0.5 + 1e-5
    target = ColourTarget()
    with torch.no_grad():
        gain = (target(out)[0].softmax(1) - target(images)[0].softmax(1)).gather(
            1, labels[:, None])
    assert (gain > 0).all()
