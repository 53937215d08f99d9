"""A run of a paper experiment, laid out like the paper's table (rows × column groups), with
the mean over seeds ± half its 95 % interval (± the std over seeds where there is no interval)
and the verdict on each of the paper's findings."""

from __future__ import annotations

from dataclasses import dataclass

from mibench.errors import MibenchError
from mibench.experiments import AT_SCALE, Experiment, Stat, Verdict, get_experiment
from mibench.plans import NATURAL_ACC
from mibench.registry import METRICS
from mibench.reports.runs import RunRecord
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
    """What the report and the leaderboard show of one experiment run."""

    experiment: Experiment
    run: RunRecord
    groups: list[str]
    headings: list[Heading]
    rows: list[tuple[str, list[str]]]     # row label, one text per (group, column)
    verdicts: list[Verdict]
    unmeasured: list[tuple[str, str]]     # (column, why) for columns without any value

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
    if stat.has_interval and show is format_value:
        return format_pm(stat.mean, (stat.high - stat.low) / 2)  # type: ignore[operator]
    return show(stat.mean) + ("" if stat.std is None else f" ± {show(stat.std)}")


def experiment_view(run: RunRecord) -> ExperimentView | None:
    """The paper-table view of ``run``, or ``None`` when it was not run as an experiment.
    Columns without a single value are left out and listed with the reason."""
    if not run.experiment:
        return None
    full = get_experiment(run.experiment)
    attacks = [a for a in full.attacks if a in run.attacks]
    targets = [t for t in full.targets if t in run.targets]
    experiment = full.subset(attacks or None, targets or None)  # a subset run: say so
    table = experiment.table(run.cells)
    shown = [c for c in table.columns
             if any(stats.get(c) is not None for stats in table.entries.values())]
    rows = []
    for row in table.rows:
        texts = [format_stat(col, table.entries.get((row, group), {}).get(col))
                 for group in table.groups for col in shown]
        rows.append((row, texts))
    unmeasured = [(c, _reason(run, c)) for c in table.columns if c not in shown]
    return ExperimentView(experiment, run, table.groups, [heading(c) for c in shown], rows,
                          experiment.verdicts(table), unmeasured)


def _reason(run: RunRecord, column: str) -> str:
    for cell in run.cells:
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
    width = len(view.headings)
    header = [exp.rows, *(f"{h.label} {h.arrow}".rstrip() for h in view.headings)]
    for i, group in enumerate(view.groups):
        lines += ["", *([f"#### {exp.groups} `{group}`", ""] if group else [])]
        lines += ["| " + " | ".join(header) + " |", "|---|" + "---:|" * width]
        lines += ["| " + " | ".join([f"`{label}`", *texts[i * width:(i + 1) * width]]) + " |"
                  for label, texts in view.rows]
    if view.unmeasured:
        lines += ["", "Not measured in this run: " + "; ".join(
            f"`{c}` ({markdown_escape(why)})" for c, why in view.unmeasured) + "."]
    if view.verdicts:
        lines += ["", "What reproduces and what does not (the paper's findings, checked on the "
                  "tables above; *tied* where the 95 % intervals overlap):", "", "| the paper's finding | here | measured |",
                  "|---|---|---|"]
        lines += [f"| {v.claim} | {verdict_mark(v)} | {markdown_escape(v.detail)} |"
                  for v in view.verdicts]
    return "\n".join(lines) + "\n"
