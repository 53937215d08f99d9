"""FMI at smoke size: the α-GAN prior trains and is cached, each start option works, queries
are exact and the latent search raises the target score."""

from __future__ import annotations

import pytest
import torch

from mibench.attacks.fmi import FMI, FMIConfig
from mibench.testing import ColourTarget, assert_loaded_from_cache

LABELS = torch.tensor([0, 0, 1, 1, 2, 2])


def test_prior_is_cached_and_has_the_four_networks(ctx):
    FMI(FMIConfig.resolve("smoke")).prepare(ctx)

    attack = FMI(FMIConfig.resolve("smoke"))
    with assert_loaded_from_cache(ctx.cache, "prior-fmi"):
        attack.prepare(ctx)
    prior = attack.prior
    x = torch.rand(2, 3, 16, 16)
    assert prior["encoder"](x).shape == (2, 16)
    assert prior["generator"](prior["encoder"](x)).shape == (2, 3, 16, 16)
    assert prior["discriminator"](x).shape == (2,)
    assert prior["code_discriminator"](torch.randn(2, 16)).shape == (2,)


@pytest.mark.parametrize("init", ["aux", "mean", "random"])
def test_inversion_counts_queries_and_raises_the_target_score(ctx, init):
    attack = FMI(FMIConfig.resolve("smoke", {"iterations": 25, "lr": 0.1, "init": init,
                                             "code_weight": 0.1, "realism_weight": 0.1}))
    attack.prepare(ctx)
    with ctx.ledger.scope(LABELS):
        images = attack.invert(ctx.target, LABELS, ctx)
    assert images.shape == (6, 3, 16, 16) and 0 <= images.min() and images.max() <= 1
    assert ctx.ledger.per_identity("gradient") == {0: 50, 1: 50, 2: 50}
    with torch.no_grad():
        start = attack.prior["generator"](attack._start(6, ctx.generator(0)))
        before = ColourTarget()(start)[0].gather(1, LABELS[:, None])
        after = ColourTarget()(images)[0].gather(1, LABELS[:, None])
    assert after.mean() > before.mean()
    if init == "mean":
        assert torch.allclose(images[0], images[1])   # one start per identity
