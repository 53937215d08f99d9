"""``leaderboard.md``: the facts of each run, the paper's tables with their findings
(:mod:`mibench.reports.experiment`), then RobustBench-style markdown, one ranked table per target
(:mod:`mibench.reports.ranking`): values are the mean over seeds ± half the 95 % interval of
the mean."""

from __future__ import annotations

from mibench.experiments import get_experiment
from mibench.reports.experiment import experiment_markdown, experiment_views
from mibench.reports.leakage import leakage_markdown, leakage_rows
from mibench.reports.ranking import (Entry, entry_label, pooled_entries, rank_column, ranked,
                                     shared_ranks)
from mibench.reports.runs import RunRecord
from mibench.reports.summary import summary_markdown
from mibench.reports.tables import (FLAG_LEGEND, FLAG_MARK, FLAGGED_COLUMNS, detail_text,
                                    equivalence_note, format_pm, format_seconds, format_value,
                                    interval_note, markdown_escape, metric_columns)
from mibench.store import Subset


PAUSE_S = 600.0   # a gap between cells longer than this: the run was resumed later


def run_facts(runs: list[RunRecord]) -> list[str]:
    """Preset, seeds, date, commit, machine and wall time of each run, as a bullet list."""
    lines = []
    for run in runs:
        wall, paused = run.wall_seconds, run.pause_seconds(PAUSE_S)
        plan = f"experiment `{run.experiment}`" if run.experiment else \
            f"{len(run.attacks)} attack(s) × {len(run.targets)} target(s)"
        if run.experiment and len(run.targets) < len(get_experiment(run.experiment).targets):
            plan += f" (targets {', '.join(run.targets)})"
        spent = "n/a" if wall is None else format_seconds(wall)
        if paused:
            spent += f", of which {format_seconds(paused)} between sessions (resumed later)"
        lines += [f"- run `{run.run_id}`: {plan}, preset **{run.preset}**, seeds "
                  f"{', '.join(map(str, run.seeds))}, started {run.date}, wall time {spent}",
                  f"  - commit `{run.versions.get('commit', 'unknown')}`, machine "
                  f"{run.versions.get('machine', 'unknown')}, device {run.device}",
                  f"  - command `{markdown_escape(run.command)}`"]
    return [*lines, ""]


def leaderboard_markdown(runs: list[RunRecord]) -> str:
    """Values of the ``all`` image set; a missing value is ``n/a`` with its reason as footnote."""
    cells = [c for run in runs for c in run.cells]
    done = [c for c in cells if c.done]
    columns = metric_columns(done)
    ranking = rank_column(columns)
    reasons: list[str] = []

    def shown(e: Entry, name: str) -> str:
        stat = e.stat(name)
        if stat is not None:
            detail = detail_text(e.first.interval(Subset.ALL, name))
            text = (format_pm(stat.mean, (stat.high - stat.low) / 2)  # type: ignore[operator]
                    if stat.has_interval else format_value(stat.mean)
                    + ("" if stat.std is None else f" (sd {format_value(stat.std)})"))
            return text + (f" ({detail})" if detail else "")
        m = e.first.measurement(Subset.ALL, name)
        reason = "not measured" if m is None else (m.reason or "no reason stored")
        if reason not in reasons:
            reasons.append(reason)
        return f"n/a[^{reasons.index(reason) + 1}]"

    by_target = pooled_entries(runs)
    lines = ["# mibench leaderboard", "", *summary_markdown(by_target, ranking), *run_facts(runs)]
    lines += [experiment_markdown(view) for view in experiment_views(runs)]
    lines += ["## Ranking per target", ""]
    if ranking is not None:
        lines += [f"Ranked by `{ranking.name}` {ranking.arrow} on all generated images, the mean "
                  "over the seeds each attack ran (stored by any run; a cell two runs hold "
                  "counts once); ↑ higher is better, ↓ lower is better; `k=`: tied with the "
                  "attack ranked above (95 % intervals overlap); `n g/p`: generated/private "
                  "image counts per seed; `sd`: std over seeds where there is no interval.", ""]
    note = interval_note(done)
    if note:
        lines += [note, ""]
    if any(c.name in FLAGGED_COLUMNS for c in columns):
        lines += [f"{FLAG_MARK}: {FLAG_LEGEND}", ""]
    header = ["Rank", "Attack", *(f"{c.name} {c.arrow}".rstrip() for c in columns), "Seeds",
              "Runs", "Preset"]
    for target, entries in by_target.items():
        ordered = ranked(entries, ranking)
        lines += [f"### Target `{target}`", "", "| " + " | ".join(header) + " |",
                  "|" + "|".join("---:" if i == 0 or 2 <= i < 2 + len(columns) else "---"
                                 for i in range(len(header))) + "|"]
        for e, rank in zip(ordered, shared_ranks(ordered, ranking)):
            flag = f" {FLAG_MARK}" if e.flagged else ""
            values = [shown(e, col.name) + (flag if col.name in FLAGGED_COLUMNS else "")
                      for col in columns]
            note = equivalence_note(e.first.attack, target)
            label = entry_label(e, entries) + (f" ({note})" if note else "")
            lines.append("| " + " | ".join([rank, label, *values,
                                            ", ".join(map(str, e.seeds)),
                                            ", ".join(f"`{r}`" for r in e.run_ids),
                                            e.preset]) + " |")
        lines.append("")
    lines += leakage_markdown(leakage_rows(done))
    failed = [c for c in cells if not c.done]
    if failed:
        lines += ["## Cells without results", ""]
        lines += [f"- `{c.attack}` × `{c.target}` (run `{c.run_id}`): {c.status}"
                  + (f": {markdown_escape(c.error)}" if c.error else "") for c in failed]
        lines.append("")
    lines += ["## Runs", "", "| Run | Preset | Date | Device | Command |", "|---|---|---|---|---|"]
    lines += [f"| `{r.run_id}` | {r.preset} | {r.date} | {markdown_escape(r.device)} | "
              f"`{markdown_escape(r.command)}` |" for r in runs]
    if reasons:
        lines.append("")
        lines += [f"[^{i}]: {markdown_escape(reason)}" for i, reason in enumerate(reasons, 1)]
    return "\n".join(lines) + "\n"
