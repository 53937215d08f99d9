"""A run of a paper experiment, laid out like the paper's table (rows × column groups), with
mean ± std over seeds and the verdict on each of the paper's findings."""

from __future__ import annotations

from dataclasses import dataclass

from mibench.errors import MibenchError
from mibench.experiments import AT_SCALE, Experiment, Stat, Verdict, get_experiment
from mibench.registry import METRICS
from mibench.reports.runs import RunRecord
from mibench.reports.tables import ARROWS, MISSING, format_count, format_seconds, format_value

LABELS = {
    "attack_s_per_identity": ("attack time / identity", "↓"),
    AT_SCALE: ("attack time, 1,000 identities (extrapolated)", "↓"),
    "forward_per_identity": ("forward queries / identity", "↓"),
    "gradient_per_identity": ("gradient queries / identity", "↓"),
    "prepare_s": ("prior time (0 when cached)", ""),
}


@dataclass(frozen=True)
class Heading:
    name: str
    label: str
    arrow: str


@dataclass
class ExperimentView:
    """What the report and the leaderboard show of one experiment run."""

    experiment: Experiment
    run: RunRecord
    groups: list[str]
    headings: list[Heading]
    rows: list[tuple[str, list[str]]]     # row label, one text per (group, column)
    verdicts: list[Verdict]

    @property
    def seeds(self) -> int:
        return len(self.run.seeds)


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
    return show(stat.mean) + ("" if stat.std is None else f" ± {show(stat.std)}")


def experiment_view(run: RunRecord) -> ExperimentView | None:
    """The paper-table view of ``run``, or ``None`` when it was not run as an experiment."""
    if not run.experiment:
        return None
    experiment = get_experiment(run.experiment)
    table = experiment.table(run.cells)
    rows = []
    for row in table.rows:
        texts = [format_stat(col, table.entries.get((row, group), {}).get(col))
                 for group in table.groups for col in table.columns]
        rows.append((row, texts))
    return ExperimentView(experiment, run, table.groups,
                          [heading(c) for c in table.columns], rows, experiment.verdicts(table))


def verdict_mark(verdict: Verdict) -> str:
    return {True: "reproduced", False: "not reproduced", None: "not measured"}[verdict.holds]


def experiment_markdown(view: ExperimentView) -> str:
    """The view as markdown: the table (one column per group × column) and the findings."""
    exp = view.experiment
    columns = [f"{g + ': ' if g else ''}{h.label} {h.arrow}".rstrip()
               for g in view.groups for h in view.headings]
    lines = [f"### {exp.title}", "", f"{exp.summary}; `mibench run --experiment {exp.name}`. "
             + (f"Mean ± std over {view.seeds} seeds." if view.seeds > 1 else "One seed."), "",
             "| " + " | ".join([exp.rows, *columns]) + " |",
             "|---|" + "---:|" * len(columns)]
    lines += ["| " + " | ".join([f"`{label}`", *texts]) + " |" for label, texts in view.rows]
    if view.verdicts:
        lines += ["", "What reproduces and what does not (the paper's findings, checked on the "
                  "table above):", "", "| the paper's finding | here | measured |",
                  "|---|---|---|"]
        lines += [f"| {v.claim} | {verdict_mark(v)} | {v.detail} |" for v in view.verdicts]
    return "\n".join(lines) + "\n"
