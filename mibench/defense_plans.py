"""The defense experiments (issue 20): attacks × undefended and defended targets.

* ``defenses`` — GMI, PPA, PLG-MI, Diff-MI, FGMIA, KEDMI and GMI+LOMMA against ``ir152`` and
  ``arcface-18``, each undefended and with every defense at its official recipe;
* ``defense-sweep`` — GMI and FGMIA against ``ir152`` and every defense at each value of its
  strength (``BASE+DEFENSE:field=value``); ``--set defense=mid`` keeps one defense.

Rows are targets, column groups attacks; the findings are the defense papers' claims.
"""

from __future__ import annotations

from typing import Callable

from mibench.findings import ExperimentTable, Finding, Outcome, compare, decide, fmt
from mibench.plans import NATURAL_ACC, Experiment
from mibench.registry import DEFENSES

DEFENSE_ATTACKS = ("gmi", "ppa", "plg", "diffmi", "fgmia", "kedmi", "gmi+lomma")
SWEEP_ATTACKS = ("gmi", "fgmia")
DEFENDED_BASES = ("ir152", "arcface-18")
DEFENSE_COLUMNS = (NATURAL_ACC, "eval_acc1", "knn_cos", "fid")


def defended_targets(bases: tuple[str, ...] = DEFENDED_BASES) -> tuple[str, ...]:
    return tuple(t for base in bases for t in (base, *(f"{base}+{d}" for d in DEFENSES.names())))


def sweep_targets(base: str = "ir152") -> tuple[str, ...]:
    """``base`` and ``base+defense:strength=value`` for every defense and swept value."""
    return (base, *(f"{base}+{name}:{d.strength}={value}" for name, d in DEFENSES.items()
                    for value in d.sweep))


def _less_success(defended: str, than: str) -> Callable:
    """Per attack and base: Eval Acc@1 against ``base+defended`` is below ``base+than``
    (``than = ''``: the undefended base), decided with the 95 % intervals."""
    def check(table: ExperimentTable) -> tuple[Outcome, str]:
        outcomes, parts = [], []
        for group in table.groups:
            for base in DEFENDED_BASES:
                other = f"{base}+{than}" if than else base
                mine = table.stat(f"{base}+{defended}", group, "eval_acc1")
                theirs = table.stat(other, group, "eval_acc1")
                if mine is None or theirs is None:
                    continue
                outcomes.append(compare(mine, theirs, higher=False))
                parts.append(f"{group}/{base}: {defended} {fmt(mine)} vs "
                             f"{than or 'none'} {fmt(theirs)}")
        return decide(outcomes), "; ".join(parts) or "not measured"
    return check


def _falls_along_sweep(defense: str, base: str = "ir152") -> Callable:
    """Per attack: Eval Acc@1 at the strongest swept value is below that at the weakest,
    decided with the 95 % intervals."""
    def check(table: ExperimentTable) -> tuple[Outcome, str]:
        found = DEFENSES.get(defense)
        rows = [f"{base}+{defense}:{found.strength}={v}" for v in found.sweep]
        outcomes, parts = [], []
        for group in table.groups:
            series = [table.stat(r, group, "eval_acc1") for r in rows]
            if series[0] is None or series[-1] is None:
                continue
            outcomes.append(compare(series[-1], series[0], higher=False))
            parts.append(f"{group}: {' → '.join(map(fmt, series))}")
        return decide(outcomes), "; ".join(parts) or "not measured"
    return check


DEFENSE_EXPERIMENTS: tuple[Experiment, ...] = (
    Experiment(
        "defenses", "Defenses: natural accuracy against attack success",
        "GMI, PPA, PLG-MI, Diff-MI, FGMIA, KEDMI, GMI+LOMMA × IR152 and ArcFace-18, "
        "undefended and with every defense",
        DEFENSE_ATTACKS, defended_targets(), rows="target", groups="attack",
        columns=DEFENSE_COLUMNS,
        findings=(
            Finding("NegLS lowers attack success below LS (Struppek et al.)",
                    _less_success("negls", "ls")),
            Finding("MID lowers attack success against the undefended target",
                    _less_success("mid", "")),
            Finding("BiDO lowers attack success against the undefended target",
                    _less_success("bido", "")),
        )),
    Experiment(
        "defense-sweep", "Defense strength sweep: the accuracy–privacy trade-off",
        "GMI and FGMIA × IR152 with each defense at several strengths (--set defense=NAME "
        "keeps one)",
        SWEEP_ATTACKS, sweep_targets(), rows="target", groups="attack",
        columns=DEFENSE_COLUMNS,
        findings=(
            Finding("A larger MID β lowers attack success", _falls_along_sweep("mid")),
            Finding("Freezing more layers (TL-DMI) lowers attack success",
                    _falls_along_sweep("tldmi")),
        )),
)
