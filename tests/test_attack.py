"""The attack contract: specs are validated, configs are typed, contexts are seeded."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from mibench.access import QueryLedger
from mibench.attack import Attack, AttackContext, AttackSpec
from mibench.cache import Cache
from mibench.config import Config, param
from mibench.errors import ConfigError
from mibench.world import Split


@dataclass
class NoiseConfig(Config):
    scale: float = param(1.0, "noise scale", gt=0)


class NoiseAttack(Attack):
    spec = AttackSpec(name="noise", title="Noise", paper="Test", year=2026, access="labels",
                      prior="none")
    Config = NoiseConfig

    def invert(self, target, labels, ctx):
        gen = ctx.generator()
        return torch.rand(len(labels), 3, 8, 8, generator=gen).mul(self.config.scale).clamp(0, 1)


@pytest.fixture
def ctx(tmp_path) -> AttackContext:
    aux = Split("aux", torch.zeros(2, 3, 8, 8, dtype=torch.uint8), torch.tensor([0, 1]),
                torch.tensor([10, 11]))
    return AttackContext(aux=aux, cache=Cache(tmp_path), device=torch.device("cpu"), seed=5,
                         ledger=QueryLedger(), show_progress=False)


def test_spec_refuses_an_unknown_access_level():
    with pytest.raises(ConfigError, match="access must be one of"):
        AttackSpec(name="x", title="x", paper="x", year=2020, access="root", prior="none")


def test_attack_takes_only_its_own_config():
    assert NoiseAttack().config == NoiseConfig()
    with pytest.raises(ConfigError, match="takes a NoiseConfig"):
        NoiseAttack(Config())
    assert repr(NoiseAttack(NoiseConfig(scale=0.5))) == "NoiseAttack(scale=0.5)"


def test_context_generators_are_reproducible(ctx):
    attack = NoiseAttack()
    first = attack.invert(None, torch.tensor([0, 1]), ctx)
    again = attack.invert(None, torch.tensor([0, 1]), ctx)
    assert torch.equal(first, again) and first.shape == (2, 3, 8, 8)
    other = torch.rand(2, 3, 8, 8, generator=ctx.generator(1))  # another stream
    assert not torch.equal(first, other)
