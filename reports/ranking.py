"""The leaderboard's ranking per target: one entry per attack (and aux set, enrolment, preset),
its seeds pooled — the mean over seeds with the interval of the mean
(:func:`mibench.plans.entry`), as the experiment tables show it.

A cell stored by several runs (``table6`` and ``table1-ext`` both run FGMIA × IR152) counts once:
finished before unfinished, then the latest; runs of other protocols (identities, samples,
evaluators…) or attack configurations make entries of their own. An entry whose ranking
interval overlaps the one ranked above it shares its rank (``2=``): the order between them is
not resolved."""

from __future__ import annotations

from dataclasses import dataclass

from mibench.findings import Stat, compare
from mibench.plans import entry
from mibench.reports.runs import CellRecord, RunRecord, latest_cells
from mibench.reports.tables import ARROWS, FLAG_GAP, Column

RANK_BY = "eval_acc1"   # attack accuracy under the evaluation model, the field's headline number


@dataclass
class Entry:
    """The finished cells of one attack × target × aux × enrolment × preset, over seeds."""

    preset: str
    cells: list[CellRecord]

    @property
    def first(self) -> CellRecord:
        return self.cells[0]

    @property
    def seeds(self) -> list[int]:
        return sorted(c.seed for c in self.cells)

    @property
    def run_ids(self) -> list[str]:
        return list(dict.fromkeys(c.run_id for c in self.cells))

    def stat(self, name: str) -> Stat | None:
        return entry(self.cells, name)

    @property
    def flagged(self) -> bool:
        """The transfer flag on the pooled transfer gap (``reports.tables.transfer_flagged``)."""
        gap = self.stat("transfer_gap")
        return gap is not None and gap.mean > FLAG_GAP and (gap.low is None or gap.low > 0)


def pooled_entries(runs: list[RunRecord]) -> dict[str, list[Entry]]:
    """Target → its entries, each cell once (:func:`mibench.reports.runs.latest_cells`)."""
    presets = {r.run_id: r.preset for r in runs}
    groups: dict[tuple, Entry] = {}
    for (protocol, config, attack, target, aux, _), cell in latest_cells(runs).items():
        if cell.done:
            key = (target, protocol, config, attack, aux, cell.enrolment)
            groups.setdefault(key, Entry(presets[cell.run_id], [])).cells.append(cell)
    by_target: dict[str, list[Entry]] = {}
    for key in sorted(groups):
        by_target.setdefault(key[0], []).append(groups[key])
    return by_target


def rank_column(columns: list[Column]) -> Column | None:
    """``RANK_BY`` when stored, else the first metric with a known direction."""
    ranked = [c for c in columns if c.direction in ARROWS]
    return next((c for c in ranked if c.name == RANK_BY), ranked[0] if ranked else None)


def ranked(entries: list[Entry], column: Column | None) -> list[Entry]:
    """``entries`` best first by ``column`` (entries without it last, by attack name)."""
    def key(e: Entry) -> tuple[int, float, str]:
        stat = e.stat(column.name) if column else None
        if stat is None:
            return (1, 0.0, e.first.attack)
        return (0, -stat.mean if column.direction == "higher" else stat.mean,  # type: ignore
                e.first.attack)
    return sorted(entries, key=key)


def shared_ranks(ordered: list[Entry], column: Column | None) -> list[str]:
    """Ranks in ranking order: an entry tied with the one above (overlapping intervals, or
    equal values without them) shares its rank; shared ranks are written ``k=``."""
    stats = [e.stat(column.name) if column else None for e in ordered]
    higher = column is not None and column.direction == "higher"
    tied_up = [i > 0 and stats[i] is not None and stats[i - 1] is not None
               and compare(stats[i], stats[i - 1], higher) == 0  # type: ignore[arg-type]
               for i in range(len(ordered))]
    ranks: list[int] = []
    for i, tied in enumerate(tied_up):
        ranks.append(ranks[-1] if tied else i + 1)
    return [f"{rank}=" if tied_up[i] or (i + 1 < len(ordered) and tied_up[i + 1])
            else str(rank) for i, rank in enumerate(ranks)]


def entry_label(e: Entry, entries: list[Entry]) -> str:
    """The attack, plus the aux set and enrolment where ``entries`` differ in them."""
    label = e.first.attack
    if len({x.first.aux for x in entries}) > 1:
        label += f" · aux {e.first.aux}"
    if len({x.first.enrolment for x in entries}) > 1:
        label += f" · enrolment {e.first.enrolment}"
    return label
