"""``leaderboard.md``: RobustBench-style markdown, one ranked table per target.

Values are shown ± half their 95 % interval; an attack whose ranking interval overlaps the one
ranked above it shares its rank (``2=``): the order between them is not resolved."""

from __future__ import annotations

from mibench.findings import compare
from mibench.metrics.bootstrap import Interval
from mibench.reports.runs import CellRecord, Measurement, RunRecord
from mibench.reports.experiment import experiment_markdown, experiment_view
from mibench.reports.leakage import leakage_markdown, leakage_rows
from mibench.reports.tables import (ARROWS, FLAG_LEGEND, FLAG_MARK, FLAGGED_COLUMNS, Column,
                                    cell_label, cell_stat, detail_text, equivalence_note,
                                    format_measured, format_seconds, interval_note,
                                    markdown_escape, metric_columns, transfer_flagged)
from mibench.store import Subset

RANK_BY = "eval_acc1"   # attack accuracy under the evaluation model, the field's headline number


def rank_column(columns: list[Column]) -> Column | None:
    """``RANK_BY`` when stored, else the first metric with a known direction."""
    ranked = [c for c in columns if c.direction in ARROWS]
    return next((c for c in ranked if c.name == RANK_BY), ranked[0] if ranked else None)


def _sort_key(cell: CellRecord, column: Column | None) -> tuple[int, float, str]:
    m = cell.measurement(Subset.ALL, column.name) if column else None
    if m is None or m.value is None:
        return (1, 0.0, cell.attack)
    return (0, -m.value if column and column.direction == "higher" else m.value, cell.attack)


def shared_ranks(ordered: list[CellRecord], column: Column | None) -> list[str]:
    """Ranks of cells in ranking order: a cell tied with the one above (overlapping intervals,
    or equal values without them) shares its rank; shared ranks are written ``k=``."""
    stats = [cell_stat(c, column.name) if column else None for c in ordered]
    higher = column is not None and column.direction == "higher"
    tied_up = [i > 0 and stats[i] is not None and stats[i - 1] is not None
               and compare(stats[i], stats[i - 1], higher) == 0  # type: ignore[arg-type]
               for i in range(len(ordered))]
    ranks: list[int] = []
    for i, tied in enumerate(tied_up):
        ranks.append(ranks[-1] if tied else i + 1)
    return [f"{rank}=" if tied_up[i] or (i + 1 < len(ordered) and tied_up[i + 1])
            else str(rank) for i, rank in enumerate(ranks)]


def run_facts(runs: list[RunRecord]) -> list[str]:
    """Preset, seeds, date, commit, machine and wall time of each run, as a bullet list."""
    lines = []
    for run in runs:
        wall = run.wall_seconds
        plan = f"experiment `{run.experiment}`" if run.experiment else \
            f"{len(run.attacks)} attack(s) × {len(run.targets)} target(s)"
        lines += [f"- run `{run.run_id}`: {plan}, preset **{run.preset}**, seeds "
                  f"{', '.join(map(str, run.seeds))}, started {run.date}, wall time "
                  f"{'n/a' if wall is None else format_seconds(wall)}",
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

    def shown(m: Measurement | None, interval: Interval | None) -> str:
        if m is not None and m.value is not None:
            detail = detail_text(interval)
            return format_measured(m.value, interval) + (f" ({detail})" if detail else "")
        reason = "not measured" if m is None else (m.reason or "no reason stored")
        if reason not in reasons:
            reasons.append(reason)
        return f"n/a[^{reasons.index(reason) + 1}]"

    by_id = {run.run_id: run for run in runs}
    lines = ["# mibench leaderboard", "", *run_facts(runs)]
    for run in runs:
        view = experiment_view(run)
        if view is not None:
            lines += [experiment_markdown(view)]
    lines += ["## Ranking per target", ""]
    if ranking is not None:
        lines += [f"Ranked by `{ranking.name}` {ranking.arrow} on all generated images; "
                  "↑ higher is better, ↓ lower is better; `k=`: tied with the attack ranked "
                  "above (95 % intervals overlap); `n g/p`: generated/private image counts.",
                  ""]
    note = interval_note(done)
    if note:
        lines += [note, ""]
    if any(c.name in FLAGGED_COLUMNS for c in columns):
        lines += [f"{FLAG_MARK}: {FLAG_LEGEND}", ""]
    header = ["Rank", "Attack", *(f"{c.name} {c.arrow}".rstrip() for c in columns), "Run",
              "Preset", "Date"]
    for target in sorted({c.target for c in done}):
        ordered = sorted((c for c in done if c.target == target),
                         key=lambda c: _sort_key(c, ranking))
        lines += [f"### Target `{target}`", "", "| " + " | ".join(header) + " |",
                  "|" + "|".join("---:" if i == 0 or 2 <= i < 2 + len(columns) else "---"
                                 for i in range(len(header))) + "|"]
        for c, rank in zip(ordered, shared_ranks(ordered, ranking)):
            run = by_id[c.run_id]
            flag = f" {FLAG_MARK}" if transfer_flagged(c) else ""
            values = [shown(c.measurement(Subset.ALL, col.name), c.interval(Subset.ALL, col.name))
                      + (flag if col.name in FLAGGED_COLUMNS else "") for col in columns]
            note = equivalence_note(c.attack, c.target)
            label = cell_label(c, cells) + (f" ({note})" if note else "")
            lines.append("| " + " | ".join([rank, label, *values,
                                            f"`{c.run_id}`",
                                            run.preset, run.date]) + " |")
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
