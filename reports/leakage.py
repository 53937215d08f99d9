"""The attribute-leakage table (issue 19.5): what of the true identities each attack recovered.

Per cell, on all generated images: ``attr_err`` ± half its 95 % interval beside its ceiling
(the identities' own private-test images) and chance (other identities' images), ``attr_acc``
likewise, and "what leaked": each attribute's error over its chance error, best recovered first
(below 1 = better than an unrelated face; the ceiling's ratio is what real photographs reach).
The references and per-attribute values come from the stored value's ``detail``
(mibench/metrics/attributes.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from mibench.metrics.attribute_reference import CONTINUOUS_NAMES, DISCRETE_NAMES
from mibench.reports.runs import CellRecord
from mibench.reports.tables import MISSING, cell_label, format_measured, format_value
from mibench.store import Subset

ERROR, ACCURACY = "attr_err", "attr_acc"
SHOWN = 5  # attributes named in the short "what leaked" list


@dataclass(frozen=True)
class Leaked:
    """One attribute: the attack's value, the ceiling's and chance's (formatted), and the
    attack's error relative to chance (continuous) or accuracy minus chance (discrete)."""

    name: str
    value: str
    ceiling: str
    chance: str
    relative: str


@dataclass(frozen=True)
class LeakageRow:
    target: str
    attack: str
    error: str
    error_ceiling: str
    error_chance: str
    accuracy: str
    accuracy_ceiling: str
    accuracy_chance: str
    continuous: list[Leaked]   # best recovered first
    discrete: list[Leaked]

    @property
    def summary(self) -> str:
        """The best-recovered attributes, ``name ratio`` each."""
        return ", ".join(f"{a.name} {a.relative}" for a in self.continuous[:SHOWN]) or MISSING


def _reference(detail: dict, key: str) -> str:
    return format_value(detail[key]) if key in detail else MISSING


def _leaked(detail: dict, kind: str, names: tuple[str, ...]) -> list[Leaked]:
    """The attributes stored in ``detail`` (``kind`` ``err`` or ``acc``), best recovered first."""
    found = [n for n in names if all(f"{p}:{n}" in detail for p in (kind, "ceiling", "chance"))]
    if kind == "err":
        score = {n: detail[f"err:{n}"] / detail[f"chance:{n}"] for n in found
                 if detail[f"chance:{n}"] > 0}
        order = sorted(score, key=score.get)
        text = {n: f"{score[n]:.2f}" for n in order}
    else:
        score = {n: detail[f"acc:{n}"] - detail[f"chance:{n}"] for n in found}
        order = sorted(score, key=score.get, reverse=True)
        text = {n: f"{score[n]:+.2f}" for n in order}
    return [Leaked(n, format_value(detail[f"{kind}:{n}"]), format_value(detail[f"ceiling:{n}"]),
                   format_value(detail[f"chance:{n}"]), text[n]) for n in order]


def _measured(cell: CellRecord, name: str) -> tuple[str, dict]:
    m = cell.measurement(Subset.ALL, name)
    iv = cell.interval(Subset.ALL, name)
    if m is None or m.value is None:
        return MISSING, {}
    return format_measured(m.value, iv), dict(iv.detail) if iv is not None else {}


def leakage_rows(cells: list[CellRecord]) -> list[LeakageRow]:
    """One row per finished cell with an ``attr_err`` or ``attr_acc`` value (none on worlds
    without attributes), by target then attack."""
    rows = []
    for cell in sorted((c for c in cells if c.done),
                       key=lambda c: (c.target, c.attack, c.aux, c.seed, c.run_id)):
        error, err_detail = _measured(cell, ERROR)
        accuracy, acc_detail = _measured(cell, ACCURACY)
        if error == MISSING and accuracy == MISSING:
            continue
        rows.append(LeakageRow(
            cell.target, cell_label(cell, cells), error, _reference(err_detail, "ceiling"),
            _reference(err_detail, "chance"), accuracy, _reference(acc_detail, "ceiling"),
            _reference(acc_detail, "chance"), _leaked(err_detail, "err", CONTINUOUS_NAMES),
            _leaked(acc_detail, "acc", DISCRETE_NAMES)))
    return rows


def leakage_markdown(rows: list[LeakageRow]) -> list[str]:
    """The table as markdown lines (empty without rows), for ``leaderboard.md``."""
    if not rows:
        return []
    lines = ["## Ground-truth attribute leakage (synthetic world)", "",
             "`attr_err` ↓: mean |predicted − true| / std over the 21 continuous attributes "
             "(regressor trained on the public split); ceiling = the identities' own "
             "private-test images, chance = other identities' images. `attr_acc` ↑: hairstyle, "
             "beard, glasses. What leaked: attribute error / chance error, best first.", "",
             "| Target | Attack | attr_err ↓ | ceiling | chance | attr_acc ↑ | ceiling | chance "
             "| What leaked |", "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    lines += [f"| `{r.target}` | {r.attack} | {r.error} | {r.error_ceiling} | {r.error_chance} "
              f"| {r.accuracy} | {r.accuracy_ceiling} | {r.accuracy_chance} | {r.summary} |"
              for r in rows]
    return [*lines, ""]
