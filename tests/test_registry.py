"""The registry: decorator registration, aliases, patterns and helpful errors."""

from __future__ import annotations

import pytest

from mibench.errors import MibenchError, UnknownNameError
from mibench.registry import Registry


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
