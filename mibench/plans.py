"""What an experiment plan is made of: its cells, the numbers of a stored cell and the measured
table (the named plans are :mod:`mibench.experiments`, defense plans
:mod:`mibench.defense_plans`; findings and their interval-aware checks :mod:`mibench.findings`).
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, field
from typing import Any

from mibench.errors import ConfigError
from mibench.findings import ExperimentTable, Finding, Stat, Verdict, aggregate
from mibench.metrics.bootstrap import combine
from mibench.store import Subset

MAIN_ATTACKS = ("gmi", "ppa", "fmi", "plg", "diffmi", "ifgmi", "uami", "fgmia")
AUX_SETS = ("similar", "hq", "wild")
PAPER_METRICS = ("target_acc1", "eval_acc1", "knn_cos", "knn_l2", "fid", "lpips", "st_lpips")
IDENTITIES_AT_SCALE = 1000    # the paper's private identities (efficiency extrapolation)
AT_SCALE = f"attack_s_{IDENTITIES_AT_SCALE}_identities"
NATURAL_ACC = "natural_acc"  # the target's private-test accuracy, stored with each cell
EFFICIENCY_COLUMNS = ("attack_s_per_identity", AT_SCALE, "forward_per_identity",
                      "gradient_per_identity", "prepare_s")


@dataclass(frozen=True)
class PlanCell:
    """One cell of a plan, before seeds: (attack, target, auxiliary set)."""

    attack: str
    target: str
    aux: str


def cell_value(cell: Any, column: str) -> float | None:
    """The number of ``column`` for a stored cell (``reports.runs.CellRecord``): a metric of
    the ``all`` image set, a timing, queries per identity (``<kind>_per_identity``), or the
    attack time of ``IDENTITIES_AT_SCALE`` identities extrapolated from the measured
    per-identity time (the paper's efficiency claim is for 1,000 identities)."""
    if not cell.done:
        return None
    if column in cell.timings:
        return float(cell.timings[column])
    if column == AT_SCALE:
        per_identity = cell.timings.get("attack_s_per_identity")
        return None if per_identity is None else per_identity * IDENTITIES_AT_SCALE
    if column.endswith("_per_identity") and column != "attack_s_per_identity":
        value = cell.queries.get("per_identity", {}).get(column.removesuffix("_per_identity"))
        return None if value is None else float(value)
    measured = cell.measurement(Subset.ALL, column)
    return None if measured is None else measured.value


def entry(cells: list[Any], column: str) -> Stat | None:
    """Mean and std over the seeds of ``cells`` of ``column``, with the interval of the mean
    when every cell has one (metrics only; :func:`mibench.metrics.bootstrap.combine`)."""
    values = [cell_value(c, column) for c in cells]
    intervals = [c.interval(Subset.ALL, column) if c.done else None for c in cells]
    combined = None
    if values and all(v is not None for v in values) and all(intervals):
        combined = combine(values, intervals)  # type: ignore[arg-type]
    return aggregate(values, combined)


@dataclass(frozen=True)
class Experiment:
    """A named plan: the cells it runs and the paper-table layout of its report."""

    name: str
    title: str
    summary: str
    attacks: tuple[str, ...]
    targets: tuple[str, ...]
    aux: tuple[str, ...] = ("similar",)
    rows: str = "attack"            # the cell field that names table rows
    groups: str = "target"          # the cell field that names column groups ("" = one group)
    columns: tuple[str, ...] = PAPER_METRICS
    findings: tuple[Finding, ...] = field(default_factory=tuple)

    def restricted(self, defense: str) -> Experiment:
        """This plan with only the undefended targets and those defended by ``defense``
        (``--set defense=mid``); unchanged for ``defense = ''``."""
        if not defense:
            return self
        kept = tuple(t for t in self.targets
                     if "+" not in t or t.split("+")[1].split(":")[0] == defense)
        return dataclasses.replace(self, targets=kept)

    def subset(self, attacks: list[str] | None, targets: list[str] | None) -> Experiment:
        """This plan with only the named ``attacks`` and ``targets`` (``None``: all of its own),
        in the plan's order: ``--experiment defenses --attacks gmi,fgmia``. A name the plan does
        not hold is a :class:`ConfigError`."""
        kept = {}
        for kind, chosen in (("attacks", attacks), ("targets", targets)):
            own = getattr(self, kind)
            if chosen is None:
                continue
            stray = [n for n in chosen if n not in own]
            if stray:
                raise ConfigError(f"--experiment {self.name} has no {kind} {', '.join(stray)}; "
                                  f"its {kind}: {', '.join(own)}")
            kept[kind] = tuple(n for n in own if n in chosen)
        kept = {k: v for k, v in kept.items() if v != getattr(self, k)}
        if not kept:
            return self
        said = "; ".join(f"{kind} {', '.join(names)}" for kind, names in kept.items())
        return dataclasses.replace(self, **kept, summary=f"{self.summary} — this run: a subset, "
                                                         f"{said}")

    def cells(self) -> list[PlanCell]:
        return [PlanCell(a, t, x) for a, t, x in itertools.product(self.attacks, self.targets,
                                                                    self.aux)]

    def table(self, cells: list[Any]) -> ExperimentTable:
        """Stored cells (any seeds) → mean ± std and interval per (row, group, column)."""
        rows = list(dict.fromkeys(getattr(c, self.rows) for c in cells))
        groups = list(dict.fromkeys(getattr(c, self.groups) if self.groups else "" for c in cells))
        order = {name: i for i, name in enumerate([*self.attacks, *self.targets, *self.aux])}
        rows.sort(key=lambda r: order.get(r, len(order)))
        groups.sort(key=lambda g: order.get(g, len(order)))
        entries: dict[tuple[str, str], dict[str, Stat | None]] = {}
        for (row, group), members in itertools.groupby(
                sorted(cells, key=lambda c: self._place(c)), key=self._place):
            members = list(members)
            entries[(row, group)] = {col: entry(members, col) for col in self.columns}
        return ExperimentTable(rows, groups, self.columns, entries)

    def _place(self, cell: Any) -> tuple[str, str]:
        return (getattr(cell, self.rows), getattr(cell, self.groups) if self.groups else "")

    def verdicts(self, table: ExperimentTable) -> list[Verdict]:
        return [finding.verdict(table) for finding in self.findings]
