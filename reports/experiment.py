"""A paper experiment laid out like the paper's table (rows × column groups), with the mean over
seeds ± half its 95 % interval (± the std over seeds where there is no interval) and the verdict
on each of the paper's findings.

A view is filled from one run (the HTML report's section) or, in the leaderboard, from every run
that holds the experiment's cells: its own runs, split by ``--targets`` into one results
directory, and runs of a larger plan (``table1-ext`` holds ``table1`` and ``efficiency``)."""

from __future__ import annotations

from dataclasses import dataclass

from mibench.errors import MibenchError
from mibench.experiments import AT_SCALE, EXPERIMENTS, Experiment, Stat, Verdict, get_experiment
from mibench.plans import NATURAL_ACC
from mibench.registry import METRICS
from mibench.reports.runs import (CellRecord, RunRecord, attack_config, latest_cells,
                                  protocol_key)
from mibench.reports.tables import (ARROWS, MISSING, format_count, format_pm, format_seconds,
                                    format_value, markdown_escape)
from mibench.store import Subset

LABELS = {
    "attack_s_per_identity": ("attack time / identity", "↓"),
    AT_SCALE: ("attack time, 1,000 identities (extrapolated)", "↓"),
    "forward_per_identity": ("forward queries / identity", "↓"),
    "gradient_per_identity": ("gradient queries / identity", "↓"),
    "prepare_s": ("prior time (0 when cached)", ""),
    NATURAL_ACC: ("natural accuracy (target, private test)", "↑"),
}


@dataclass(frozen=True)
class Heading:
    name: str
    label: str
    arrow: str


@dataclass
class ExperimentView:
    """What the report and the leaderboard show of one experiment."""

    experiment: Experiment
    runs: list[RunRecord]                 # the runs whose cells fill it, in store order
    groups: list[str]
    headings: list[Heading]
    rows: list[tuple[str, list[str]]]     # row label, one text per (group, column)
    verdicts: list[Verdict]
    unmeasured: list[tuple[str, str]]     # (column, why) for columns without any value
    seed_values: tuple[int, ...] = (0,)

    @property
    def seeds(self) -> int:
        return len(self.seed_values)

    @property
    def borrowed(self) -> list[RunRecord]:
        """The runs of another (larger) experiment whose cells this view shows."""
        return [r for r in self.runs if r.experiment != self.experiment.name]


def heading(column: str) -> Heading:
    if column in LABELS:
        label, arrow = LABELS[column]
        return Heading(column, label, arrow)
    try:
        direction = METRICS.get(column).spec.direction
    except MibenchError:
        direction = None
    return Heading(column, column, ARROWS.get(direction or "", ""))


def format_stat(column: str, stat: Stat | None) -> str:
    if stat is None:
        return MISSING
    if column.endswith("_s") or "_s_" in column:
        show = format_seconds
    elif column.endswith("_per_identity"):
        show = format_count
    else:
        show = format_value
    if stat.has_interval and show is format_value:
        return format_pm(stat.mean, (stat.high - stat.low) / 2)  # type: ignore[operator]
    return show(stat.mean) + ("" if stat.std is None else f" ± {show(stat.std)}")


def experiment_view(run: RunRecord) -> ExperimentView | None:
    """The paper-table view of ``run`` from its own cells, or ``None`` when it was not run as an
    experiment."""
    if not run.experiment:
        return None
    return _view(get_experiment(run.experiment), [run], run.cells)


def experiment_views(runs: list[RunRecord]) -> list[ExperimentView]:
    """One view per experiment that a run in ``runs`` is a run of, or holds (its experiment's
    plan contains the other's: ``table1-ext`` holds ``table1``), in the order of
    :data:`EXPERIMENTS`, and per protocol (:func:`protocol_key`). A view takes the cells of its
    plan from every run of that protocol — Table IV's aux ``similar`` cells are Table II's
    CosFace cells — as long as the attack is configured alike; a cell stored by several runs
    counts once (:func:`latest_cells`)."""
    views = []
    stored = latest_cells(runs)
    by_id = {r.run_id: r for r in runs}
    for experiment in EXPERIMENTS.values():
        plan = {(c.attack, c.target, c.aux) for c in experiment.cells()}
        named = [r for r in runs if r.experiment == experiment.name
                 or (r.experiment and plan <= _plan(r))]
        for protocol in dict.fromkeys(protocol_key(r) for r in named):
            configs = {}
            for run in named:
                if protocol_key(run) == protocol:
                    for attack in run.config.get("attacks", {}):
                        configs.setdefault(attack, attack_config(run, attack))
            cells = [cell for (proto, config, *key), cell in stored.items()
                     if proto == protocol and tuple(key[:3]) in plan
                     and config == configs.get(key[0], config)]
            if cells:
                used = list(dict.fromkeys(c.run_id for c in cells))
                views.append(_view(experiment, [by_id[r] for r in by_id if r in used], cells))
    return views


def _plan(run: RunRecord) -> set[tuple[str, str, str]]:
    """The (attack, target, aux) cells the plan of ``run``'s experiment has (not only those it
    ran: a ``--targets`` subset of ``table1-ext`` still holds cells of ``table1``)."""
    full = get_experiment(run.experiment).restricted(run.config.get("run", {}).get("defense", ""))
    return {(c.attack, c.target, c.aux) for c in full.cells()}


def _view(full: Experiment, runs: list[RunRecord], cells: list[CellRecord]) -> ExperimentView:
    """``full`` narrowed to the attacks and targets ``cells`` cover (a subset says so), with
    the columns that hold a value; those without one are listed with the reason."""
    attacks = [a for a in full.attacks if any(c.attack == a for c in cells)]
    targets = [t for t in full.targets if any(c.target == t for c in cells)]
    experiment = full.subset(attacks or None, targets or None)
    table = experiment.table(cells)
    shown = [c for c in table.columns
             if any(stats.get(c) is not None for stats in table.entries.values())]
    rows = []
    for row in table.rows:
        texts = [format_stat(col, table.entries.get((row, group), {}).get(col))
                 for group in table.groups for col in shown]
        rows.append((row, texts))
    unmeasured = [(c, _reason(cells, c)) for c in table.columns if c not in shown]
    return ExperimentView(experiment, runs, table.groups, [heading(c) for c in shown], rows,
                          experiment.verdicts(table), unmeasured,
                          seed_values=tuple(sorted({c.seed for c in cells})))


def _reason(cells: list[CellRecord], column: str) -> str:
    for cell in cells:
        measured = cell.measurement(Subset.ALL, column)
        if measured is not None and measured.reason:
            return measured.reason
    return "no finished cell stored it"


def verdict_mark(verdict: Verdict) -> str:
    if verdict.tied:
        return "tied"
    return {True: "reproduced", False: "not reproduced", None: "not measured"}[verdict.holds]


def experiment_markdown(view: ExperimentView) -> str:
    """The view as markdown: one table per column group (wide paper tables do not fit a
    markdown page), the columns left out, and the findings."""
    exp = view.experiment
    lines = [f"### {exp.title}", "", f"{exp.summary}; `mibench run --experiment {exp.name}`. "
             + (f"Mean over {view.seeds} seeds" if view.seeds > 1 else "One seed")
             + " ± half its 95 % interval over the attacked identities"
             + (" (± std over seeds where there is none)." if view.seeds > 1 else ".")]
    if len(view.runs) > 1 or view.borrowed:
        lines += ["", "Cells from " + ", ".join(
            f"run `{r.run_id}`" + (f" (experiment `{r.experiment}`)"
                                   if r.experiment != exp.name else "") for r in view.runs)
            + "; seeds " + ", ".join(map(str, view.seed_values)) + "."]
    width = len(view.headings)
    header = [exp.rows, *(f"{h.label} {h.arrow}".rstrip() for h in view.headings)]
    for i, group in enumerate(view.groups):
        lines += ["", *([f"#### {exp.groups} `{group}`", ""] if group else [])]
        lines += ["| " + " | ".join(header) + " |", "|---|" + "---:|" * width]
        lines += ["| " + " | ".join([f"`{label}`", *texts[i * width:(i + 1) * width]]) + " |"
                  for label, texts in view.rows]
    if view.unmeasured:
        where = "this run" if len(view.runs) == 1 else "these runs"
        lines += ["", f"Not measured in {where}: " + "; ".join(
            f"`{c}` ({markdown_escape(why)})" for c, why in view.unmeasured) + "."]
    if view.verdicts:
        lines += ["", "What reproduces and what does not (the paper's findings, checked on the "
                  "tables above; *tied* where the 95 % intervals overlap):", "", "| the paper's finding | here | measured |",
                  "|---|---|---|"]
        lines += [f"| {v.claim} | {verdict_mark(v)} | {markdown_escape(v.detail)} |"
                  for v in view.verdicts]
    return "\n".join(lines) + "\n"
