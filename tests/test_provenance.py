"""Provenance of the attacks: where config defaults come from (``param(source=...)``), shown in
the report's protocol table, and each attack docstring's closing list of deviations from the
official code."""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from typing import ClassVar, Mapping

import pytest

from mibench.config import SOURCES, Config, param
from mibench.errors import ConfigError
from mibench.registry import ATTACKS
from mibench.reports.render import value_source_rows

NO_PUBLIC_CODE = ("fmi", "uami")
"""Attacks without public code: every config field says whether its default is the paper's."""
DEVIATIONS_HEADING = "Remaining deviations from the official code:"
WITH_DEVIATIONS = ("ppa", "ifgmi", "fmi")
"""Attacks whose module docstring is checked for its closing deviations list (extend as the
other attacks gain theirs)."""


@dataclass
class Base(Config):
    size: int = param(8, "a size", source="paper")
    rate: float = param(0.1, "a rate")


@dataclass
class Child(Base):
    sources: ClassVar[Mapping[str, str]] = {"size": "ours", "rate": "ours"}


@dataclass
class Grandchild(Child):
    size: int = param(4, "a size, re-declared", source="code")


def test_the_nearest_marking_class_gives_a_fields_source():
    assert (Base.source("size"), Base.source("rate")) == ("paper", None)
    assert (Child.source("size"), Child.source("rate")) == ("ours", "ours")
    assert (Grandchild.source("size"), Grandchild.source("rate")) == ("code", "ours")
    assert [row[3] for row in Base.describe()] == ["a size [paper]", "a rate"]
    with pytest.raises(ConfigError, match="no field 'depth'"):
        Base.source("depth")


def test_an_unknown_source_is_refused_when_the_field_is_declared():
    with pytest.raises(ConfigError, match="source 'guess' is unknown"):
        param(1, "steps", source="guess")


@pytest.mark.parametrize("name", NO_PUBLIC_CODE)
def test_every_field_of_an_attack_without_public_code_says_where_its_default_comes_from(name):
    config = ATTACKS.get(name).Config
    unmarked = [f.name for f in dataclasses.fields(config) if config.source(f.name) is None]
    assert not unmarked, f"{name}: mark {unmarked} with param(source=...) or `sources`"
    assert {config.source(f) for f in config.field_names()} <= set(SOURCES)
    for klass in config.__mro__:                      # `sources` names only real fields
        assert set(vars(klass).get("sources", {})) <= set(config.field_names()), klass


def test_the_protocol_table_lists_the_paper_and_our_values_of_unpublished_attacks():
    rows = dict(value_source_rows({"fmi": {}, "ppa": {}, "not-registered": {}}))
    assert set(rows) == {"fmi defaults by source"}
    text = rows["fmi defaults by source"]
    assert text.startswith("paper: none; ours: ")
    assert {"lr", "iterations", "init", "gan_lr"} <= set(text.split("ours: ")[1].split(", "))


def deviations(doc: str) -> list[str]:
    """The bullet items of the docstring's closing deviations section; fails unless the
    section is there once and nothing but its bullets follows the heading."""
    assert doc.count(DEVIATIONS_HEADING) == 1, "one deviations heading"
    tail = doc.split(DEVIATIONS_HEADING)[1].strip("\n")
    items: list[str] = []
    for line in tail.splitlines():
        if line.startswith("- "):
            items.append(line[2:])
        else:
            assert items and line.startswith("  ") and line.strip(), \
                f"only bullets (with indented continuation lines) may follow: {line!r}"
            items[-1] += " " + line.strip()
    return items


@pytest.mark.parametrize("name", WITH_DEVIATIONS)
def test_the_attack_docstring_ends_with_its_deviations_from_the_official_code(name):
    doc = sys.modules[ATTACKS.get(name).__module__].__doc__ or ""
    items = deviations(doc)
    assert items and all(len(item) > 20 for item in items)


def test_the_deviations_check_fails_on_a_docstring_without_a_closing_list():
    with pytest.raises(AssertionError):
        deviations("PPA.\n\nRemaining deviations from the official code:\n- one\n\nMore text.")
    with pytest.raises(AssertionError):
        deviations("PPA.\n\nDeviations, stated: (1) ...")
    assert deviations(f"X.\n\n{DEVIATIONS_HEADING}\n- a\n  b\n- c\n") == ["a b", "c"]
