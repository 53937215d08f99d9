"""The report's tables: metrics (best per target marked, direction-aware) and efficiency."""

from __future__ import annotations

from dataclasses import dataclass, field

from mibench.errors import MibenchError
from mibench.plans import NATURAL_ACC
from mibench.registry import ATTACKS, METRICS, TARGETS
from mibench.reports.runs import CellRecord, Measurement
from mibench.store import Subset

# Display order of the built-in metrics (identity accuracy first, as in the MI literature);
# metrics not listed here (plugins) follow alphabetically.
DISPLAY_ORDER = ("eval_acc1", "eval_acc5", "target_acc1", "target_acc5", "knn_cos", "knn_l2",
                 "feat_dist", "fid", "lpips", "st_lpips")
ARROWS = {"higher": "↑", "lower": "↓"}
MISSING = "n/a"


@dataclass(frozen=True)
class Column:
    """A metric column: its definition from the metric registry (when registered)."""

    name: str
    direction: str | None
    description: str

    @property
    def arrow(self) -> str:
        return ARROWS.get(self.direction or "", "")


@dataclass(frozen=True)
class Shown:
    """A formatted measurement; ``note`` numbers the footnote holding the missing reason."""

    text: str
    reason: str | None = None
    note: int | None = None

    @property
    def missing(self) -> bool:
        return self.reason is not None


@dataclass
class ValueCell:
    """One table cell: the ``all`` value, the ``selected`` value beside it, best or not."""

    all: Shown
    selected: Shown
    best: bool = False


@dataclass
class Row:
    """An (attack, run) row inside a target group; failed cells carry their error."""

    attack: str
    run_id: str
    status: str
    error: str | None
    values: list[ValueCell]
    note: str | None = None


@dataclass
class Group:
    """The rows of one target: "best" is decided within a group."""

    target: str
    rows: list[Row]


@dataclass
class MetricTable:
    columns: list[Column]
    groups: list[Group]
    notes: list[str] = field(default_factory=list)
    show_run: bool = False


def format_value(value: float) -> str:
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:.1f}"
    if magnitude >= 10:
        return f"{value:.2f}"
    return f"{value:.3f}"


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return MISSING
    if seconds < 10:
        return f"{seconds:.2f} s"
    if seconds < 600:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min"


def format_count(count: float | None) -> str:
    if count is None:
        return MISSING
    return f"{count:,.0f}" if float(count).is_integer() else f"{count:,.1f}"


def markdown_escape(text: str) -> str:
    """``text`` safe inside a markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def metric_columns(cells: list[CellRecord]) -> list[Column]:
    """Every metric stored for ``cells``, in display order, with its registered definition."""
    names = {name for c in cells for subset in c.metrics.values() for name in subset
             if name != NATURAL_ACC}  # the target's, not the attack's: defense tables show it
    ordered = [n for n in DISPLAY_ORDER if n in names] + sorted(names - set(DISPLAY_ORDER))
    columns = []
    for name in ordered:
        try:
            spec = METRICS.get(name).spec
        except MibenchError:
            columns.append(Column(name, None, "not registered here (plugin not loaded?)"))
            continue
        columns.append(Column(name, spec.direction, spec.description))
    return columns


def best_values(values: list[float | None], direction: str | None) -> set[int]:
    """Indices of the best value(s) of a column; none unless two or more values compete."""
    present = [(i, v) for i, v in enumerate(values) if v is not None]
    if direction not in ARROWS or len(present) < 2:
        return set()
    pick = max if direction == "higher" else min
    best = pick(v for _, v in present)
    return {i for i, v in present if v == best}


class _Notes:
    """Footnotes for missing values: one number per distinct reason."""

    def __init__(self) -> None:
        self.reasons: list[str] = []

    def show(self, measurement: Measurement | None) -> Shown:
        if measurement is None:
            return self.missing("not measured for this image set")
        if measurement.value is None:
            return self.missing(measurement.reason or "no reason stored")
        return Shown(format_value(measurement.value))

    def missing(self, reason: str) -> Shown:
        if reason not in self.reasons:
            self.reasons.append(reason)
        return Shown(MISSING, reason, self.reasons.index(reason) + 1)


def cell_label(cell: CellRecord, cells: list[CellRecord]) -> str:
    """The attack, plus the aux set and seed where ``cells`` has more than one of them."""
    label = cell.attack
    if len({c.aux for c in cells}) > 1:
        label += f" · aux {cell.aux}"
    if len({c.seed for c in cells}) > 1:
        label += f" · seed {cell.seed}"
    return label


def equivalence_note(attack: str, target: str) -> str | None:
    """"same as X on open-set targets" for an attack that declares it
    (:attr:`AttackSpec.same_as_on_open_set`) on a zoo target of kind ``open``; ``None`` where
    the attack or target is not registered here (a plugin that is not loaded)."""
    if attack not in ATTACKS or target not in TARGETS:
        return None
    same = getattr(ATTACKS.get(attack).spec, "same_as_on_open_set", None)
    if same is None or _target_kind(TARGETS.get(target)) != "open":
        return None
    return f"same as {same} on open-set targets"


def _target_kind(entry: object) -> str | None:
    """``open`` or ``closed`` for a zoo entry (pretrained entries say it, trained ones in their
    recipe); ``None`` for a plugin target that declares neither."""
    kind = getattr(entry, "kind", None)
    resolve = getattr(entry, "resolve", None)
    return kind if kind is not None or resolve is None else resolve("paper").kind


def metric_table(cells: list[CellRecord], *, show_run: bool = False) -> MetricTable:
    """Attacks × targets: one group per target, one row per (attack, aux, seed, run)."""
    columns = metric_columns(cells)
    notes = _Notes()
    groups = []
    for target in sorted({c.target for c in cells}):
        members = sorted((c for c in cells if c.target == target),
                         key=lambda c: (c.attack, c.aux, c.seed, c.run_id))
        rows = []
        for cell in members:
            values = [] if not cell.done else [
                ValueCell(notes.show(cell.measurement(Subset.ALL, col.name)),
                          notes.show(cell.measurement(Subset.SELECTED, col.name)))
                for col in columns]
            rows.append(Row(cell_label(cell, cells), cell.run_id, cell.status, cell.error,
                            values, equivalence_note(cell.attack, cell.target)))
        _mark_best(rows, members, columns)
        groups.append(Group(target, rows))
    return MetricTable(columns, groups, notes.reasons, show_run)


def _mark_best(rows: list[Row], cells: list[CellRecord], columns: list[Column]) -> None:
    for j, column in enumerate(columns):
        values = []
        for cell in cells:
            m = cell.measurement(Subset.ALL, column.name) if cell.done else None
            values.append(None if m is None else m.value)
        for i in best_values(values, column.direction):
            rows[i].values[j].best = True


@dataclass(frozen=True)
class EfficiencyRow:
    attack: str
    target: str
    run_id: str
    status: str
    prepare: str
    attack_per_identity: str
    forward_per_identity: str
    gradient_per_identity: str
    prepare_queries: str
    evaluation: str


def efficiency_rows(cells: list[CellRecord]) -> list[EfficiencyRow]:
    """Time and queries per cell (prepare = prior training, ~0 when it came from the cache)."""
    rows = []
    for c in sorted(cells, key=lambda c: (c.target, c.attack, c.aux, c.seed, c.run_id)):
        per_identity = c.queries.get("per_identity", {})
        prepare = c.queries.get("prepare", {})
        prepare_queries = (f"{format_count(prepare.get('forward'))} / "
                           f"{format_count(prepare.get('gradient'))}" if prepare else MISSING)
        rows.append(EfficiencyRow(
            cell_label(c, cells), c.target, c.run_id, c.status,
            format_seconds(c.timings.get("prepare_s")),
            format_seconds(c.timings.get("attack_s_per_identity")),
            format_count(per_identity.get("forward")),
            format_count(per_identity.get("gradient")),
            prepare_queries,
            format_seconds(c.timings.get("eval_s"))))
    return rows
