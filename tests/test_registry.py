"""The registry: decorator registration, aliases, patterns, helpful errors, and the attack
contract checked at registration."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from mibench.attack import Attack, AttackContractError, AttackSpec, check_attack_contract
from mibench.config import Config
from mibench.errors import MibenchError, UnknownNameError
from mibench.registry import ATTACKS, Registry


@pytest.fixture
def registry() -> Registry:
    reg = Registry("target", "mibench.tests-nonexistent-group")
    for name in ("arcface-18", "arcface-34", "cosface-18", "ir152"):
        reg.add(name, type(name, (), {"description": f"the {name} target"}))
    reg.add("arcface-18", reg.get("arcface-18"), aliases=("arcface",))
    return reg


def test_decorator_registers_and_returns_the_object(registry):
    @registry.register("facenet")
    class FaceNet:
        """Inception-ResNet-v1."""

    assert registry.get("facenet") is FaceNet
    assert "facenet" in registry.names()


def test_unknown_name_lists_close_matches(registry):
    with pytest.raises(UnknownNameError, match=r"unknown target 'arcfase-18'; did you mean "
                                               r"arcface-18"):
        registry.get("arcfase-18")
    with pytest.raises(UnknownNameError, match="known targets: .*ir152"):
        registry.get("zzz")


def test_aliases_patterns_and_all(registry):
    assert registry.canonical("arcface") == "arcface-18"
    assert registry.expand("arcface") == ["arcface-18"]
    assert registry.expand("arcface-*") == ["arcface-18", "arcface-34"]
    assert registry.expand("ir152,arcface-*,arcface") == ["ir152", "arcface-18", "arcface-34"]
    assert registry.expand("all") == ["arcface-18", "arcface-34", "cosface-18", "ir152"]
    with pytest.raises(UnknownNameError, match="matches no target"):
        registry.expand("vgg-*")


def test_registering_two_objects_under_one_name_is_an_error(registry):
    with pytest.raises(MibenchError, match="registered twice"):
        registry.add("ir152", object())


def test_empty_registry_says_so():
    with pytest.raises(UnknownNameError, match="no attacks are registered"):
        Registry("attack", "mibench.tests-nonexistent-group").get("gmi")


class Complete(Attack):
    spec = AttackSpec(name="complete", title="Complete", paper="Test", year=2026,
                      access="labels", prior="none")

    def invert(self, target, labels, ctx):
        return torch.zeros(len(labels), 3, 8, 8)


@dataclass
class NotAConfig:
    level: float = 0.5


NOT_A_CONFIG = "has a `Config` that is not a mibench.config.Config subclass; declare"


def attack_class(**attributes) -> type:
    return type("Broken", (Complete,), attributes)


@pytest.mark.parametrize("obj, problem", [
    (attack_class(spec=None), r"has no `spec`; set `spec = AttackSpec\(name=\.\.\."),
    (attack_class(spec={"name": "x"}), "has a `spec` of type dict, not AttackSpec"),
    (attack_class(Config=NotAConfig), NOT_A_CONFIG),
    (attack_class(Config=Config()), NOT_A_CONFIG),
    (type("Broken", (Attack,), {"spec": Complete.spec}), "does not implement `invert`"),
    (type("Broken", (), {}), "is not a subclass of mibench.attack.Attack"),
])
def test_attack_registration_checks_the_contract(obj, problem):
    attacks = Registry("attack", "mibench.tests-nonexistent-group", check=check_attack_contract)
    with pytest.raises(AttackContractError, match=rf"^attack 'broken' \(test_registry\.Broken\) "
                                                  rf"{problem}") as error:
        attacks.add("broken", obj)
    assert "\n" not in str(error.value)
    assert "broken" not in attacks
    attacks.add("complete", Complete)
    assert attacks.get("complete") is Complete


def test_the_attack_registry_refuses_an_attack_without_invert():
    with pytest.raises(AttackContractError, match="'no-invert' .* does not implement `invert`"):
        ATTACKS.register("no-invert")(type("NoInvert", (Attack,), {"spec": Complete.spec}))
    assert "no-invert" not in ATTACKS
