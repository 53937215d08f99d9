"""The paper's experiments as named plans (FGMIA, IEEE TIFS 2025; ../shared/docs/paper.md).

An :class:`Experiment` fixes the cells of a run — attacks × targets × auxiliary sets — and how
its report lays them out: which cell field makes the rows, which makes the column groups, and
which numbers fill the columns (metrics, or per-identity time and queries). Its ``findings``
are the paper's qualitative claims written as checks over the measured table, so that the
report and ``leaderboard.md`` say plainly which ones this run reproduces, deciding with the 95 %
intervals (:mod:`mibench.findings`).

``mibench run --experiment NAME`` runs a plan at any preset; priors and targets come from the
shared cache, so experiments that share them train nothing twice.
"""

from __future__ import annotations

from typing import Any, Mapping

from mibench.defense_plans import DEFENSE_EXPERIMENTS
from mibench.errors import UnknownNameError
from mibench.findings import (ExperimentTable, Finding, Stat, Verdict, above_everywhere,
                              best_in_every_group, better_than, not_better_than, ordered,
                              shift_drop_smallest, speedup, spread_at_most, trend)
from mibench.plans import (AT_SCALE, AUX_SETS, EFFICIENCY_COLUMNS, IDENTITIES_AT_SCALE,
                           MAIN_ATTACKS, PAPER_METRICS, Experiment, PlanCell, cell_value)
from mibench.registry import ATTACKS, TARGETS

__all__ = ["AT_SCALE", "AUX_SETS", "EFFICIENCY_COLUMNS", "EXPERIMENTS", "IDENTITIES_AT_SCALE",
           "MAIN_ATTACKS", "PAPER_METRICS", "Experiment", "ExperimentTable", "Finding",
           "PlanCell", "Stat", "Verdict", "cell_value", "get_experiment", "plan_cells", "seeds"]

# --- the plans ----------------------------------------------------------------------------------

DEPTHS = (18, 34, 50, 100)
TABLE1_TARGETS = ("ir152", "evolve", "facenet", "cosface-18", "arcface-18")
EXPERIMENTS: dict[str, Experiment] = {e.name: e for e in (
    Experiment(
        "table1", "Table I: all attacks × five targets",
        "every attack against IR152, Face.evoLVe, FaceNet, CosFace and ArcFace; aux similar",
        MAIN_ATTACKS, TABLE1_TARGETS,
        findings=(
            Finding("FGMIA's Eval Acc is the best of all attacks on every target",
                    best_in_every_group("fgmia", ("eval_acc1",), higher=True)),
            Finding("FGMIA's KNN similarity (cosine) is the best on every target",
                    best_in_every_group("fgmia", ("knn_cos",), higher=True)),
            Finding("FGMIA's LPIPS distance is the best (lowest) on every target",
                    best_in_every_group("fgmia", ("lpips", "st_lpips"), higher=False)),
            Finding("FGMIA's FID is not better than PPA's (StyleGAN diversity)",
                    not_better_than("fgmia", "ppa", "fid", higher=False)),
        )),
    Experiment(
        "table1-ext", "Table I extended: KEDMI and LOMMA beside the attacks of Table I",
        "Table I's attacks plus KEDMI, GMI+LOMMA and KEDMI+LOMMA (the attacks defense papers "
        "report against) on the same five targets; aux similar",
        (*MAIN_ATTACKS, "kedmi", "gmi+lomma", "kedmi+lomma"), TABLE1_TARGETS,
        findings=(
            Finding("KEDMI's Eval Acc is above GMI's on every target (KEDMI, ICCV'21)",
                    better_than("kedmi", "gmi", "eval_acc1", higher=True)),
            Finding("LOMMA raises GMI's Eval Acc on every target (LOMMA, CVPR'23)",
                    better_than("gmi+lomma", "gmi", "eval_acc1", higher=True)),
            Finding("LOMMA raises KEDMI's Eval Acc on every target (LOMMA, CVPR'23)",
                    better_than("kedmi+lomma", "kedmi", "eval_acc1", higher=True)),
        )),
    Experiment(
        "table2", "Table II: target depth",
        "FGMIA against CosFace and ArcFace at 18/34/50/100 layers",
        ("fgmia",), tuple(f"{f}-{d}" for f in ("cosface", "arcface") for d in DEPTHS),
        rows="target", groups="",
        findings=(
            Finding("FGMIA works at every depth (Eval Acc ≥ 50 %)",
                    above_everywhere("eval_acc1", 0.5)),
            Finding("Eval Acc is slightly higher for deeper targets (18 → 100)",
                    trend("eval_acc1", rising=True, label="depth series")),
        )),
    Experiment(
        "table3", "Table III: fine-tuned targets",
        "FGMIA against CosFace-18 and ArcFace-18, each fine-tuned on private data 4 times",
        ("fgmia",), tuple(f"{f}-18{r}" for f in ("cosface", "arcface")
                          for r in ("", "@ft1", "@ft2", "@ft3", "@ft4")),
        rows="target", groups="",
        findings=(
            Finding("Eval Acc stays above 70 % on every fine-tuned target",
                    above_everywhere("eval_acc1", 0.7)),
            Finding("Eval Acc declines mildly as fine-tuning goes on (base → ft4)",
                    trend("eval_acc1", rising=False, label="fine-tuning series")),
        )),
    Experiment(
        "table4", "Table IV: distribution shift, FGMIA",
        "FGMIA against CosFace 18/34/50/100 with aux similar, high-quality and wild",
        ("fgmia",), tuple(f"cosface-{d}" for d in DEPTHS), AUX_SETS,
        rows="target", groups="aux",
        findings=(
            Finding("Only small fluctuations across aux sets (Eval Acc spread ≤ 10 points)",
                    spread_at_most("eval_acc1", 0.10)),
        )),
    Experiment(
        "table5", "Table V: distribution shift, methods compared",
        "GMI, PPA, Diff-MI and FGMIA against ArcFace with the three aux sets",
        ("gmi", "ppa", "diffmi", "fgmia"), ("arcface-18",), AUX_SETS,
        rows="attack", groups="aux",
        findings=(
            Finding("FGMIA loses the least Eval Acc when the aux set shifts",
                    shift_drop_smallest("fgmia", "eval_acc1")),
        )),
    Experiment(
        "table6", "Table VI: FGMIA ablations",
        "full FGMIA vs no-FG, no-TransF and no-ScaleFT against IR152",
        ("fgmia", "fgmia-no-scaleft", "fgmia-no-transf", "fgmia-no-fg"), ("ir152",),
        findings=(
            Finding("Eval Acc: full ≥ no-ScaleFT ≥ no-TransF ≥ no-FG",
                    ordered("eval_acc1", ("fgmia", "fgmia-no-scaleft", "fgmia-no-transf",
                                           "fgmia-no-fg"))),
        )),
    Experiment(
        "efficiency", "Efficiency: time and queries per identity",
        "every attack against ArcFace: prior time, attack time and target queries per identity",
        MAIN_ATTACKS, ("arcface-18",), columns=EFFICIENCY_COLUMNS,
        findings=(
            Finding("FGMIA's attack phase is ≥ 20× faster per identity than GMI's and PPA's",
                    speedup("fgmia", ("gmi", "ppa"), "attack_s_per_identity", 20.0)),
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
    the experiment's plan (kept to the run's attacks and targets), or ``attacks × targets``
    with the run's one aux set."""
    if run.get("experiment"):
        experiment = get_experiment(run["experiment"]).restricted(run.get("defense", ""))
        return experiment.subset(*(run[k].split(",") if run.get(k) else None
                                   for k in ("attacks", "targets"))).cells()
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
