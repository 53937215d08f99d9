"""GMI at smoke size: the prior is cached, queries are exact, optimisation raises the score."""

from __future__ import annotations

import pytest
import torch

from mibench.access import QueryLedger, WhiteBox
from mibench.attack import AttackContext
from mibench.attacks import gmi as gmi_module
from mibench.attacks.gmi import GMI, GMIConfig
from mibench.target import Target
from mibench.world import Split


class ColourTarget(Target):
    """Class c is the colour prototype c: logits = −10·‖mean colour − prototype‖²."""

    def __init__(self) -> None:
        super().__init__(num_classes=3, resolution=16, feature_dim=3, mean=(0, 0, 0),
                         std=(1, 1, 1))
        self.register_buffer("prototypes", torch.tensor([[0.9, 0.1, 0.1], [0.1, 0.9, 0.1],
                                                         [0.1, 0.1, 0.9]]))

    def embed(self, x):
        return x.mean(dim=(2, 3))

    def classify(self, features):
        return -10 * torch.cdist(features, self.prototypes).pow(2)


@pytest.fixture
def ctx(cache) -> AttackContext:
    gen = torch.Generator().manual_seed(0)
    images = (torch.rand(48, 3, 32, 32, generator=gen) * 255).to(torch.uint8)
    aux = Split("aux", images, torch.arange(48) % 6, torch.arange(48) % 6 + 100)
    ledger = QueryLedger()
    return AttackContext(aux=aux, cache=cache, device=torch.device("cpu"), seed=0,
                         ledger=ledger, target=WhiteBox(ColourTarget(), ledger),
                         data_fingerprint="toy", show_progress=False)


def smoke_config(**overrides) -> GMIConfig:
    return GMIConfig.resolve("smoke", overrides)


def test_prior_is_trained_once_and_cached(ctx, monkeypatch):
    GMI(smoke_config()).prepare(ctx)
    assert len(list((ctx.cache.root / "prior-gmi").iterdir())) >= 1

    def no_training(*args, **kwargs):
        raise AssertionError("the cached prior should have been loaded")

    monkeypatch.setattr(gmi_module, "train_wgan_gp", no_training)
    attack = GMI(smoke_config())
    attack.prepare(ctx)
    assert attack.generator(torch.zeros(2, attack.config.z_dim)).shape == (2, 3, 32, 32)


def test_inversion_counts_queries_and_raises_the_target_score(ctx):
    attack = GMI(smoke_config(iterations=30, lr=0.1, batch_size=4))
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
