"""The paper's experiments as named plans (FGMIA, IEEE TIFS 2025; ../shared/docs/paper.md).

An :class:`Experiment` fixes the cells of a run — attacks × targets × auxiliary sets — and how
its report lays them out: which cell field makes the rows, which makes the column groups, and
which numbers fill the columns (metrics, or per-identity time and queries). Its ``findings``
are the paper's qualitative claims written as checks over the measured table, so that the
report and ``leaderboard.md`` say plainly which ones this run reproduces.

``mibench run --experiment NAME`` runs a plan at any preset; priors and targets come from the
shared cache, so experiments that share them train nothing twice.
"""

from __future__ import annotations

import statistics
from typing import Any, Callable, Mapping

from mibench.defense_plans import DEFENSE_EXPERIMENTS
from mibench.errors import UnknownNameError
from mibench.plans import (AT_SCALE, AUX_SETS, EFFICIENCY_COLUMNS, IDENTITIES_AT_SCALE,
                           MAIN_ATTACKS, PAPER_METRICS, Experiment, ExperimentTable, Finding,
                           PlanCell, Stat, Verdict, aggregate, cell_value)
from mibench.plans import fmt as _fmt
from mibench.registry import ATTACKS, TARGETS

__all__ = ["AT_SCALE", "AUX_SETS", "EFFICIENCY_COLUMNS", "EXPERIMENTS", "IDENTITIES_AT_SCALE",
           "MAIN_ATTACKS", "PAPER_METRICS", "Experiment", "ExperimentTable", "Finding",
           "PlanCell", "Stat", "Verdict", "aggregate", "cell_value", "check_plan_names",
           "get_experiment", "plan_cells", "seeds"]


def _best_in_every_group(attack: str, columns: tuple[str, ...], higher: bool) -> Callable:
    """``attack`` strictly beats every other row of each group (a tie is not "the best"), on
    the first of ``columns`` the run measured (e.g. LPIPS, else its shift-tolerant variant)."""
    def check(table: ExperimentTable) -> tuple[bool | None, str]:
        wins, parts = [], []
        for group in table.groups:
            for column in columns:
                present = {r: v for r in table.rows
                           if (v := table.get(r, group, column)) is not None}
                if attack in present and len(present) >= 2:
                    break
            else:
                continue
            rivals = {r: v for r, v in present.items() if r != attack}
            best = (max if higher else min)(rivals, key=rivals.__getitem__)
            mine = present[attack]
            wins.append(mine > rivals[best] if higher else mine < rivals[best])
            parts.append(f"{group}: {attack} {_fmt(mine)}, best other {best} "
                         f"{_fmt(rivals[best])}" + ("" if column == columns[0] else
                                                    f" ({column})"))
        return (all(wins) if wins else None), "; ".join(parts) or "not measured"
    return check


def _not_better_than(attack: str, other: str, column: str, higher: bool) -> Callable:
    def check(table: ExperimentTable) -> tuple[bool | None, str]:
        verdicts, parts = [], []
        for group in table.groups:
            mine, theirs = table.get(attack, group, column), table.get(other, group, column)
            if mine is None or theirs is None:
                continue
            verdicts.append(mine <= theirs if higher else mine >= theirs)
            parts.append(f"{group}: {attack} {_fmt(mine)} vs {other} {_fmt(theirs)}")
        return (all(verdicts) if verdicts else None), "; ".join(parts) or "not measured"
    return check


def _above_everywhere(column: str, floor: float) -> Callable:
    def check(table: ExperimentTable) -> tuple[bool | None, str]:
        values = {(r, g): table.get(r, g, column) for r in table.rows for g in table.groups}
        present = {k: v for k, v in values.items() if v is not None}
        if not present:
            return None, "not measured"
        low = min(present, key=present.__getitem__)
        return (present[low] >= floor,
                f"lowest {column} {_fmt(present[low])} ({' '.join(x for x in low if x)})")
    return check


def _trend(column: str, rising: bool, label: str) -> Callable:
    """Rows in plan order, per group: does ``column`` rise (or fall) from first to last?"""
    def check(table: ExperimentTable) -> tuple[bool | None, str]:
        verdicts, parts = [], []
        for group in table.groups:
            for family in _families(table.rows):
                series = [table.get(r, group, column) for r in family]
                if len(family) < 2 or series[0] is None or series[-1] is None:
                    continue
                verdicts.append(series[-1] > series[0] if rising else series[-1] < series[0])
                parts.append(f"{family[0]}→{family[-1]}: {' → '.join(map(_fmt, series))}")
        return (all(verdicts) if verdicts else None), "; ".join(parts) or f"no {label}"
    return check


def _families(rows: list[str]) -> list[list[str]]:
    """Group targets by family (``arcface-18@ft2`` and ``arcface-34`` → ``arcface``)."""
    families: dict[str, list[str]] = {}
    for row in rows:
        families.setdefault(row.split("-")[0], []).append(row)
    return list(families.values())


def _spread_at_most(column: str, limit: float) -> Callable:
    """Per row, the largest minus the smallest value across groups (here: aux sets)."""
    def check(table: ExperimentTable) -> tuple[bool | None, str]:
        verdicts, parts = [], []
        for row in table.rows:
            values = [v for g in table.groups if (v := table.get(row, g, column)) is not None]
            if len(values) < 2:
                continue
            spread = max(values) - min(values)
            verdicts.append(spread <= limit)
            parts.append(f"{row}: {_fmt(spread)}")
        return (all(verdicts) if verdicts else None), "; ".join(parts) or "not measured"
    return check


def _shift_drop_smallest(attack: str, column: str, base: str = "similar") -> Callable:
    """Under shifted aux sets, ``attack`` loses less of ``column`` than every other row."""
    def check(table: ExperimentTable) -> tuple[bool | None, str]:
        drops = {}
        for row in table.rows:
            ref = table.get(row, base, column)
            shifted = [v for g in table.groups if g != base
                       and (v := table.get(row, g, column)) is not None]
            if ref is not None and shifted:
                drops[row] = ref - statistics.fmean(shifted)
        if attack not in drops or len(drops) < 2:
            return None, "not measured"
        detail = "; ".join(f"{r}: {_fmt(d)}" for r, d in drops.items())
        return drops[attack] == min(drops.values()), f"mean drop from {base}: {detail}"
    return check


def _ordered(column: str, order: tuple[str, ...]) -> Callable:
    def check(table: ExperimentTable) -> tuple[bool | None, str]:
        group = table.groups[0] if table.groups else ""
        values = [table.get(r, group, column) for r in order]
        if any(v is None for v in values):
            return None, "not measured"
        holds = all(a >= b for a, b in zip(values, values[1:]))
        return holds, " ≥ ".join(f"{r} {_fmt(v)}" for r, v in zip(order, values))
    return check


def _speedup(fast: str, slow: tuple[str, ...], column: str, factor: float) -> Callable:
    def check(table: ExperimentTable) -> tuple[bool | None, str]:
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


# --- the plans ----------------------------------------------------------------------------------

DEPTHS = (18, 34, 50, 100)
EXPERIMENTS: dict[str, Experiment] = {e.name: e for e in (
    Experiment(
        "table1", "Table I: all attacks × five targets",
        "every attack against IR152, Face.evoLVe, FaceNet, CosFace and ArcFace; aux similar",
        MAIN_ATTACKS, ("ir152", "evolve", "facenet", "cosface-18", "arcface-18"),
        findings=(
            Finding("FGMIA's Eval Acc is the best of all attacks on every target",
                    _best_in_every_group("fgmia", ("eval_acc1",), higher=True)),
            Finding("FGMIA's KNN similarity (cosine) is the best on every target",
                    _best_in_every_group("fgmia", ("knn_cos",), higher=True)),
            Finding("FGMIA's LPIPS distance is the best (lowest) on every target",
                    _best_in_every_group("fgmia", ("lpips", "st_lpips"), higher=False)),
            Finding("FGMIA's FID is not better than PPA's (StyleGAN diversity)",
                    _not_better_than("fgmia", "ppa", "fid", higher=False)),
        )),
    Experiment(
        "table2", "Table II: target depth",
        "FGMIA against CosFace and ArcFace at 18/34/50/100 layers",
        ("fgmia",), tuple(f"{f}-{d}" for f in ("cosface", "arcface") for d in DEPTHS),
        rows="target", groups="",
        findings=(
            Finding("FGMIA works at every depth (Eval Acc ≥ 50 %)",
                    _above_everywhere("eval_acc1", 0.5)),
            Finding("Eval Acc is slightly higher for deeper targets (18 → 100)",
                    _trend("eval_acc1", rising=True, label="depth series")),
        )),
    Experiment(
        "table3", "Table III: fine-tuned targets",
        "FGMIA against CosFace-18 and ArcFace-18, each fine-tuned on private data 4 times",
        ("fgmia",), tuple(f"{f}-18{r}" for f in ("cosface", "arcface")
                          for r in ("", "@ft1", "@ft2", "@ft3", "@ft4")),
        rows="target", groups="",
        findings=(
            Finding("Eval Acc stays above 70 % on every fine-tuned target",
                    _above_everywhere("eval_acc1", 0.7)),
            Finding("Eval Acc declines mildly as fine-tuning goes on (base → ft4)",
                    _trend("eval_acc1", rising=False, label="fine-tuning series")),
        )),
    Experiment(
        "table4", "Table IV: distribution shift, FGMIA",
        "FGMIA against CosFace 18/34/50/100 with aux similar, high-quality and wild",
        ("fgmia",), tuple(f"cosface-{d}" for d in DEPTHS), AUX_SETS,
        rows="target", groups="aux",
        findings=(
            Finding("Only small fluctuations across aux sets (Eval Acc spread ≤ 10 points)",
                    _spread_at_most("eval_acc1", 0.10)),
        )),
    Experiment(
        "table5", "Table V: distribution shift, methods compared",
        "GMI, PPA, Diff-MI and FGMIA against ArcFace with the three aux sets",
        ("gmi", "ppa", "diffmi", "fgmia"), ("arcface-18",), AUX_SETS,
        rows="attack", groups="aux",
        findings=(
            Finding("FGMIA loses the least Eval Acc when the aux set shifts",
                    _shift_drop_smallest("fgmia", "eval_acc1")),
        )),
    Experiment(
        "table6", "Table VI: FGMIA ablations",
        "full FGMIA vs no-FG, no-TransF and no-ScaleFT against IR152",
        ("fgmia", "fgmia-no-scaleft", "fgmia-no-transf", "fgmia-no-fg"), ("ir152",),
        findings=(
            Finding("Eval Acc: full ≥ no-ScaleFT ≥ no-TransF ≥ no-FG",
                    _ordered("eval_acc1", ("fgmia", "fgmia-no-scaleft", "fgmia-no-transf",
                                           "fgmia-no-fg"))),
        )),
    Experiment(
        "efficiency", "Efficiency: time and queries per identity",
        "every attack against ArcFace: prior time, attack time and target queries per identity",
        MAIN_ATTACKS, ("arcface-18",), columns=EFFICIENCY_COLUMNS,
        findings=(
            Finding("FGMIA's attack phase is ≥ 20× faster per identity than GMI's and PPA's",
                    _speedup("fgmia", ("gmi", "ppa"), "attack_s_per_identity", 20.0)),
        )),
    *DEFENSE_EXPERIMENTS,
)}


def get_experiment(name: str) -> Experiment:
    try:
        return EXPERIMENTS[name]
    except KeyError:
        raise UnknownNameError(f"unknown experiment {name!r}; choose one of "
                               f"{', '.join(EXPERIMENTS)} (see `mibench list experiments`)"
                               ) from None


def plan_cells(run: Mapping[str, Any]) -> list[PlanCell]:
    """The (attack, target, aux) cells of a resolved ``run`` section, seeds not yet applied:
    the experiment's plan, or ``attacks × targets`` with the run's one aux set."""
    if run.get("experiment"):
        return get_experiment(run["experiment"]).restricted(run.get("defense", "")).cells()
    return [PlanCell(a, t, run["aux"]) for a in ATTACKS.expand(run["attacks"])
            for t in TARGETS.expand(run["targets"])]


def seeds(run: Mapping[str, Any]) -> list[int]:
    """The seeds of a run: ``seed, seed+1, …`` (``seeds`` of them)."""
    return list(range(run["seed"], run["seed"] + run.get("seeds", 1)))


def check_plan_names(experiment: Experiment) -> None:
    """Fail early, naming the component, when a plan's attack or target is not registered."""
    for name in experiment.attacks:
        ATTACKS.canonical(name)
    for name in experiment.targets:
        TARGETS.canonical(name)
