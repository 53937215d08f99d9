"""GMI at smoke size: the prior is cached, queries are exact, optimisation raises the score."""

from __future__ import annotations

import torch

from mibench.attacks.gmi import GMI, GMIConfig
from mibench.testing import ColourTarget, assert_loaded_from_cache


def smoke_config(**overrides) -> GMIConfig:
    return GMIConfig.resolve("smoke", overrides)


def test_prior_is_trained_once_and_cached(ctx):
    GMI(smoke_config()).prepare(ctx)
    assert len(list((ctx.cache.root / "prior-gmi").iterdir())) >= 1

    attack = GMI(smoke_config())
    with assert_loaded_from_cache(ctx.cache, "prior-gmi"):
        attack.prepare(ctx)
    assert attack.generator(torch.zeros(2, attack.config.z_dim)).shape == (2, 3, 32, 32)


def test_inversion_counts_queries_and_raises_the_target_score(ctx):
    # lr / 100 per sample (issue 18.4): 2.5 is the step the batch-of-4 mean with lr 0.1 took
    attack = GMI(smoke_config(iterations=30, lr=2.5, batch_size=4))
    attack.prepare(ctx)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    images = attack.invert(ctx.target, labels, ctx)
    assert images.shape == (6, 3, 32, 32) and 0 <= images.min() and images.max() <= 1
    assert ctx.ledger.counts["gradient"] == {0: 60, 1: 60, 2: 60}
    assert ctx.ledger.counts["forward"] == {0: 60, 1: 60, 2: 60}

    z0 = torch.randn(6, attack.config.z_dim, generator=ctx.generator(0)).clamp(-1, 1)
    with torch.no_grad():
        before = ColourTarget()(attack.generator(z0))[0].gather(1, labels[:, None])
        after = ColourTarget()(images)[0].gather(1, labels[:, None])
    assert after.mean() > before.mean()


def test_selection_keeps_the_highest_target_logit(ctx):
    attack = GMI(smoke_config())
    images = torch.stack([torch.full((3, 16, 16), v) for v in (0.2, 0.9, 0.5, 0.5)])
    images[1, 1:] = 0.1                              # sample 1 is red: class 0's best
    labels = torch.tensor([0, 0, 1, 1])
    images[3, 1] = 0.9                               # sample 3 is greener: class 1's best
    picked = attack.select(ctx.target, images, labels, ctx)
    assert picked.tolist() == [1, 3]
