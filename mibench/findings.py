"""The measured table of an experiment and the paper's findings as checks over it, decided
with the 95 % intervals (issue 19.1).

A table entry is a :class:`Stat`: the mean over seeds, their std, and the interval of that mean
(:func:`mibench.metrics.bootstrap.combine`). Two entries are ordered only when their intervals
are disjoint (:func:`compare`); overlapping intervals are a tie, and a finding whose comparisons
tie is ``tied``, neither reproduced nor refuted. Entries without an interval (timings, runs
stored before intervals existed, one attacked identity) are ordered by their values.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Callable, Iterable, Literal, Sequence

TIED = "tied"
Outcome = bool | None | Literal["tied"]   # None: the table lacks what the claim needs


@dataclass(frozen=True)
class Stat:
    """Mean and (sample) std of one table entry over seeds, and the interval of the mean."""

    mean: float
    std: float | None
    n: int
    low: float | None = None
    high: float | None = None

    @property
    def has_interval(self) -> bool:
        return self.low is not None and self.high is not None


def aggregate(values: Iterable[float | None],
              interval: tuple[float, float] | None = None) -> Stat | None:
    present = [v for v in values if v is not None]
    if not present:
        return None
    std = statistics.stdev(present) if len(present) > 1 else None
    low, high = interval if interval is not None else (None, None)
    return Stat(statistics.fmean(present), std, len(present), low, high)


def compare(a: Stat, b: Stat, higher: bool) -> int:
    """1 when ``a`` is better than ``b``, -1 when worse, 0 when tied: with both intervals,
    better means disjoint intervals; otherwise the values decide (equal values tie)."""
    if a.has_interval and b.has_interval:
        if a.low > b.high:  # type: ignore[operator]
            return 1 if higher else -1
        if a.high < b.low:  # type: ignore[operator]
            return -1 if higher else 1
        return 0
    if a.mean == b.mean:
        return 0
    return 1 if (a.mean > b.mean) == higher else -1


def leaders(stats: Sequence[Stat | None], higher: bool) -> tuple[set[int], bool]:
    """Indices of the entries tied with the best value, and whether the best is alone (its
    interval separates from every other's); nothing unless two or more entries compete."""
    present = [(i, s) for i, s in enumerate(stats) if s is not None]
    if len(present) < 2:
        return set(), False
    best_i, best = (max if higher else min)(present, key=lambda p: p[1].mean)
    tied = {i for i, s in present if compare(s, best, higher) >= 0}
    return tied | {best_i}, tied <= {best_i}


def decide(outcomes: Sequence[int]) -> Outcome:
    """A finding made of comparisons (1 holds, -1 fails, 0 tied): refuted by any failure,
    reproduced when all hold, else tied; ``None`` when nothing was compared."""
    if not outcomes:
        return None
    if any(o < 0 for o in outcomes):
        return False
    return True if all(o > 0 for o in outcomes) else TIED


@dataclass
class ExperimentTable:
    """``entries[(row, group)][column]``: the measured table of one experiment run."""

    rows: list[str]
    groups: list[str]
    columns: tuple[str, ...]
    entries: dict[tuple[str, str], dict[str, Stat | None]]

    def stat(self, row: str, group: str, column: str) -> Stat | None:
        return self.entries.get((row, group), {}).get(column)

    def get(self, row: str, group: str, column: str) -> float | None:
        stat = self.stat(row, group, column)
        return None if stat is None else stat.mean


@dataclass(frozen=True)
class Verdict:
    claim: str
    holds: bool | None      # None: not measured, or tied
    detail: str
    tied: bool = False


Check = Callable[[ExperimentTable], tuple[Outcome, str]]


@dataclass(frozen=True)
class Finding:
    """A claim of the paper and the check that decides it on a measured table."""

    claim: str
    check: Check

    def verdict(self, table: ExperimentTable) -> Verdict:
        outcome, detail = self.check(table)
        if outcome == TIED:
            return Verdict(self.claim, None, detail, tied=True)
        return Verdict(self.claim, outcome, detail)  # type: ignore[arg-type]


def fmt(stat: Stat | float | None) -> str:
    """A value, with ``[low, high]`` when it has an interval."""
    if stat is None:
        return "n/a"
    if isinstance(stat, Stat):
        text = fmt(stat.mean)
        return text + (f" [{fmt(stat.low)}, {fmt(stat.high)}]" if stat.has_interval else "")
    return f"{round(stat, 4) + 0.0:.3g}"


def best_in_every_group(attack: str, columns: tuple[str, ...], higher: bool) -> Check:
    """``attack`` beats the best other row of each group with disjoint intervals (a tie is not
    "the best"), on the first of ``columns`` the run measured (LPIPS, else ST-LPIPS)."""
    def check(table: ExperimentTable) -> tuple[Outcome, str]:
        outcomes, parts = [], []
        for group in table.groups:
            for column in columns:
                present = {r: s for r in table.rows
                           if (s := table.stat(r, group, column)) is not None}
                if attack in present and len(present) >= 2:
                    break
            else:
                continue
            rivals = {r: s for r, s in present.items() if r != attack}
            best = (max if higher else min)(rivals, key=lambda r: rivals[r].mean)
            outcomes.append(compare(present[attack], rivals[best], higher))
            parts.append(f"{group}: {attack} {fmt(present[attack])}, best other {best} "
                         f"{fmt(rivals[best])}" + ("" if column == columns[0] else
                                                   f" ({column})"))
        return decide(outcomes), "; ".join(parts) or "not measured"
    return check


def better_than(attack: str, other: str, column: str, higher: bool, *,
                sign: int = 1) -> Check:
    """``attack`` beats ``other`` on ``column`` in every group (``sign`` -1: never beats it)."""
    def check(table: ExperimentTable) -> tuple[Outcome, str]:
        outcomes, parts = [], []
        for group in table.groups:
            mine, theirs = table.stat(attack, group, column), table.stat(other, group, column)
            if mine is None or theirs is None:
                continue
            outcomes.append(sign * compare(mine, theirs, higher))
            parts.append(f"{group}: {attack} {fmt(mine)} vs {other} {fmt(theirs)}")
        return decide(outcomes), "; ".join(parts) or "not measured"
    return check


def not_better_than(attack: str, other: str, column: str, higher: bool) -> Check:
    return better_than(attack, other, column, higher, sign=-1)


def above_everywhere(column: str, floor: float) -> Check:
    """Every entry at or above ``floor``: its whole interval (or value) above, below, or
    straddling it (tied)."""
    def check(table: ExperimentTable) -> tuple[Outcome, str]:
        present = {(r, g): s for r in table.rows for g in table.groups
                   if (s := table.stat(r, g, column)) is not None}
        if not present:
            return None, "not measured"
        outcomes = []
        for s in present.values():
            low, high = (s.low, s.high) if s.has_interval else (s.mean, s.mean)
            outcomes.append(1 if low >= floor else -1 if high < floor else 0)  # type: ignore
        low_key = min(present, key=lambda k: present[k].mean)
        return (decide(outcomes), f"lowest {column} {fmt(present[low_key])} "
                                  f"({' '.join(x for x in low_key if x)})")
    return check


def trend(column: str, rising: bool, label: str) -> Check:
    """Rows in plan order, per group and family: does ``column`` rise (or fall) from the first
    to the last, with disjoint intervals?"""
    def check(table: ExperimentTable) -> tuple[Outcome, str]:
        outcomes, parts = [], []
        for group in table.groups:
            for family in families(table.rows):
                series = [table.stat(r, group, column) for r in family]
                first, last = series[0], series[-1]
                if len(family) < 2 or first is None or last is None:
                    continue
                outcomes.append(compare(last, first, higher=rising))
                parts.append(f"{family[0]}→{family[-1]}: {' → '.join(map(fmt, series))}")
        return decide(outcomes), "; ".join(parts) or f"no {label}"
    return check


def families(rows: list[str]) -> list[list[str]]:
    """Group targets by family (``arcface-18@ft2`` and ``arcface-34`` → ``arcface``)."""
    found: dict[str, list[str]] = {}
    for row in rows:
        found.setdefault(row.split("-")[0], []).append(row)
    return list(found.values())


def spread_at_most(column: str, limit: float) -> Check:
    """Per row, the largest minus the smallest value across groups (here: aux sets): within
    ``limit`` even between the intervals' far ends, beyond it even between their near ends,
    else tied."""
    def check(table: ExperimentTable) -> tuple[Outcome, str]:
        outcomes, parts = [], []
        for row in table.rows:
            stats = [s for g in table.groups if (s := table.stat(row, g, column)) is not None]
            if len(stats) < 2:
                continue
            lows = [s.low if s.has_interval else s.mean for s in stats]
            highs = [s.high if s.has_interval else s.mean for s in stats]
            widest = max(highs) - min(lows)  # type: ignore[type-var, operator]
            narrowest = max(lows) - min(highs)  # type: ignore[type-var, operator]
            outcomes.append(1 if widest <= limit else -1 if narrowest > limit else 0)
            parts.append(f"{row}: {fmt(max(s.mean for s in stats) - min(s.mean for s in stats))}")
        return decide(outcomes), "; ".join(parts) or "not measured"
    return check


def shift_drop_smallest(attack: str, column: str, base: str = "similar") -> Check:
    """Under shifted aux sets, ``attack`` loses less of ``column`` than every other row (the
    drops are differences of means; they have no interval, so values decide)."""
    def check(table: ExperimentTable) -> tuple[Outcome, str]:
        drops = {}
        for row in table.rows:
            ref = table.get(row, base, column)
            shifted = [v for g in table.groups if g != base
                       and (v := table.get(row, g, column)) is not None]
            if ref is not None and shifted:
                drops[row] = ref - statistics.fmean(shifted)
        if attack not in drops or len(drops) < 2:
            return None, "not measured"
        detail = "; ".join(f"{r}: {fmt(d)}" for r, d in drops.items())
        return drops[attack] == min(drops.values()), f"mean drop from {base}: {detail}"
    return check


def ordered(column: str, order: tuple[str, ...]) -> Check:
    """``order`` is non-increasing in ``column``: refuted by any pair separated the wrong way,
    reproduced when every neighbour pair is separated the right way or equal, else tied."""
    def check(table: ExperimentTable) -> tuple[Outcome, str]:
        group = table.groups[0] if table.groups else ""
        stats = [table.stat(r, group, column) for r in order]
        if any(s is None for s in stats):
            return None, "not measured"
        outcomes = [1 if a.mean == b.mean and not a.has_interval else compare(a, b, True)
                    for a, b in zip(stats, stats[1:])]  # type: ignore[union-attr, arg-type]
        return decide(outcomes), " ≥ ".join(f"{r} {fmt(s)}" for r, s in zip(order, stats))
    return check


def speedup(fast: str, slow: tuple[str, ...], column: str, factor: float) -> Check:
    def check(table: ExperimentTable) -> tuple[Outcome, str]:
        verdicts, parts = [], []
        for group in table.groups:
            mine = table.get(fast, group, column)
            for other in slow:
                theirs = table.get(other, group, column)
                if mine is None or theirs is None or mine <= 0:
                    continue
                verdicts.append(theirs / mine >= factor)
                parts.append(f"{other}/{fast} = {theirs / mine:.1f}×")
        return (all(verdicts) if verdicts else None), "; ".join(parts) or "not measured"
    return check
