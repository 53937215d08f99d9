"""Typed configs: validation names the field; presets scale; --set values are typed."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from mibench.config import Config, param, parse_assignment, set_path
from mibench.errors import ConfigError


@dataclass
class ToyConfig(Config):
    steps: int = param(100, "optimisation steps", ge=1)
    lr: float = param(0.02, "learning rate", gt=0)
    loss: str = param("ce", "identity loss", choices=("ce", "margin"))
    augment: bool = param(True, "use augmentations")
    sizes: tuple[int, ...] = param((8, 16), "channel sizes")

    presets = {"smoke": {"steps": 2}, "mini": {"steps": 20}}


def test_defaults_and_presets_scale_only_what_they_name():
    assert ToyConfig().steps == 100
    smoke = ToyConfig.resolve("smoke")
    assert (smoke.steps, smoke.lr) == (2, 0.02)
    assert ToyConfig.resolve("paper").steps == 100
    assert ToyConfig.resolve("mini", {"steps": 7}).steps == 7


@pytest.mark.parametrize("field,value,message", [
    ("steps", 0, "ToyConfig.steps: must be >= 1"),
    ("steps", "ten", "ToyConfig.steps: expected an integer"),
    ("steps", 1.5, "ToyConfig.steps: expected an integer"),
    ("lr", 0.0, "ToyConfig.lr: must be > 0"),
    ("lr", True, "ToyConfig.lr: expected a number"),
    ("loss", "mse", "ToyConfig.loss: must be one of"),
    ("augment", "yes", "ToyConfig.augment: expected true/false"),
    ("sizes", ["a"], "ToyConfig.sizes[0]: expected an integer"),
])
def test_wrong_type_or_range_names_the_field(field, value, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        ToyConfig(**{field: value})


def test_numbers_are_coerced_where_lossless():
    cfg = ToyConfig(lr=1, steps=3.0, sizes=[4, 5])
    assert cfg.lr == 1.0 and isinstance(cfg.lr, float)
    assert cfg.steps == 3 and isinstance(cfg.steps, int)
    assert cfg.sizes == (4, 5)


def test_unknown_field_lists_the_fields():
    with pytest.raises(ConfigError, match="no field 'stepz'.*steps, lr"):
        ToyConfig.resolve("mini", {"stepz": 1})


def test_unknown_preset_is_refused():
    with pytest.raises(ConfigError, match="unknown preset 'huge'"):
        ToyConfig.resolve("huge")


@pytest.mark.parametrize("text,path,value", [
    ("run.seed=3", ["run", "seed"], 3),
    ("attacks.gmi.lr=0.5", ["attacks", "gmi", "lr"], 0.5),
    ("run.device=cpu", ["run", "device"], "cpu"),
    ("world.style=hq", ["world", "style"], "hq"),
    ("x.flag=false", ["x", "flag"], False),
    ("x.sizes=[1, 2]", ["x", "sizes"], [1, 2]),
])
def test_assignments_are_typed(text, path, value):
    assert parse_assignment(text) == (path, value)


def test_assignment_without_equals_is_an_error():
    with pytest.raises(ConfigError, match="key=value"):
        parse_assignment("run.seed")


def test_set_path_refuses_to_descend_into_a_value():
    tree = {"run": 3}
    with pytest.raises(ConfigError, match="is a value"):
        set_path(tree, ["run", "seed"], 1)


def test_round_trip_through_dict():
    cfg = ToyConfig.resolve("smoke", {"sizes": (1, 2, 3)})
    assert ToyConfig(**cfg.to_dict()) == cfg
    assert [row[0] for row in ToyConfig.describe()] == ["steps", "lr", "loss", "augment", "sizes"]
