"""The report's tables: metrics (value ± half its 95 % interval; best per target marked,
direction-aware, only where its interval separates from the runner-up's, else the leaders are
"tied"; a cell whose second evaluator grants far less than the first is flagged, issue 19.4) and
efficiency."""

from __future__ import annotations

from dataclasses import dataclass, field

from mibench.errors import MibenchError
from mibench.findings import Stat, leaders
from mibench.metrics.bootstrap import METHODS, Interval
from mibench.plans import NATURAL_ACC
from mibench.registry import ATTACKS, METRICS, TARGETS
from mibench.reports.runs import CellRecord, Measurement
from mibench.store import Subset

# Display order of the built-in metrics (identity accuracy first, as in the MI literature);
# metrics not listed here (plugins) follow alphabetically.
DISPLAY_ORDER = ("eval_acc1", "eval_acc5", "eval2_acc1", "eval2_acc5", "transfer_gap",
                 "target_acc1", "target_acc5", "sar_far1e-3", "knn_cos", "knn_l2",
                 "feat_dist", "fid", "kid", "precision", "recall", "density", "coverage",
                 "lpips", "st_lpips", "attr_err", "attr_acc")
ARROWS = {"higher": "↑", "lower": "↓"}
MISSING = "n/a"
# The transfer flag: eval_acc1 − eval2_acc1 above FLAG_GAP with its 95 % interval above 0.
FLAG_GAP = 0.25
FLAGGED_COLUMNS = ("eval2_acc1", "transfer_gap")
FLAG_MARK = "⚑"
FLAG_LEGEND = ("the second evaluator grants far less than the first "
               f"(transfer_gap = eval_acc1 − eval2_acc1 > {FLAG_GAP:g} and its 95 % interval "
               "above 0): many of these images may be false positives of the first evaluator.")


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
    """A formatted measurement; ``note`` numbers the footnote holding the missing reason;
    ``detail`` says what the value rests on (sample counts, KID's std over subsets)."""

    text: str
    reason: str | None = None
    note: int | None = None
    detail: str | None = None

    @property
    def missing(self) -> bool:
        return self.reason is not None


@dataclass
class ValueCell:
    """One table cell: the ``all`` value, the ``selected`` value beside it, best (separated
    from the runner-up) or tied for best (intervals overlapping the best's)."""

    all: Shown
    selected: Shown
    best: bool = False
    tied: bool = False
    flagged: bool = False


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
    intervals: str | None = None   # how the ± were computed (None: no intervals stored)


def decimals(value: float) -> int:
    magnitude = abs(value)
    return 1 if magnitude >= 100 else 2 if magnitude >= 10 else 3


def format_value(value: float) -> str:
    return f"{value:.{decimals(value)}f}"


def format_pm(value: float, half: float) -> str:
    """``value ± half`` with the value's decimals."""
    return f"{value:.{decimals(value)}f} ± {half:.{decimals(value)}f}"


def format_measured(value: float, interval: Interval | None) -> str:
    """The value, ``± half`` its interval's width when it has one."""
    half = None if interval is None else interval.half_width
    return format_value(value) if half is None else format_pm(value, half)


def detail_text(interval: Interval | None) -> str | None:
    """Sample counts (generated/private images) and KID's std over its subsets (sd), when
    stored."""
    detail = {} if interval is None else interval.detail
    if "generated" not in detail:
        return None
    text = f"n {detail['generated']:.0f}/{detail['private']:.0f}"
    if "std" in detail:
        text += f", subset sd {detail['std']:.2g}"
    return text


def interval_note(cells: list[CellRecord]) -> str | None:
    """How the stored intervals of ``cells`` were computed: methods, resamples, seed."""
    found = {(iv.method, len(iv.replicates), iv.seed) for c in cells
             for subset in c.intervals.values() for iv in subset.values() if iv.low is not None}
    if not found:
        return None
    parts = sorted(f"{METHODS.get(m, m)} ({n} resamples, seed {seed})" for m, n, seed in found)
    return ("± is half the 95 % interval: " + "; ".join(parts)
            + ". Best is marked only where its interval separates from the runner-up's.")


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


class _Notes:
    """Footnotes for missing values: one number per distinct reason."""

    def __init__(self) -> None:
        self.reasons: list[str] = []

    def show(self, measurement: Measurement | None, interval: Interval | None = None) -> Shown:
        if measurement is None:
            return self.missing("not measured for this image set")
        if measurement.value is None:
            return self.missing(measurement.reason or "no reason stored")
        return Shown(format_measured(measurement.value, interval), detail=detail_text(interval))

    def missing(self, reason: str) -> Shown:
        if reason not in self.reasons:
            self.reasons.append(reason)
        return Shown(MISSING, reason, self.reasons.index(reason) + 1)


def cell_label(cell: CellRecord, cells: list[CellRecord]) -> str:
    """The attack, plus the aux set, seed and enrolment where ``cells`` has more than one of
    them (runs with another enrolment measured another protocol)."""
    label = cell.attack
    if len({c.aux for c in cells}) > 1:
        label += f" · aux {cell.aux}"
    if len({c.seed for c in cells}) > 1:
        label += f" · seed {cell.seed}"
    if len({c.enrolment for c in cells}) > 1:
        label += f" · enrolment {cell.enrolment}"
    return label


def equivalence_note(attack: str, target: str) -> str | None:
    """"same as X on open-set targets" for an attack that declares it
    (:attr:`AttackSpec.same_as_on_open_set`) on a zoo target of kind ``open``; ``None`` where
    the attack or target is not registered here (a plugin that is not loaded)."""
    if attack not in ATTACKS or target not in TARGETS:
        return None
    same = getattr(ATTACKS.get(attack).spec, "same_as_on_open_set", None)
    if same is None or target_kind(TARGETS.get(target)) != "open":
        return None
    return f"same as {same} on open-set targets"


def target_kind(entry: object) -> str | None:
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
                ValueCell(*(notes.show(cell.measurement(subset, col.name),
                                       cell.interval(subset, col.name))
                            for subset in (Subset.ALL, Subset.SELECTED)))
                for col in columns]
            if cell.done and transfer_flagged(cell):
                for j, col in enumerate(columns):
                    values[j].flagged = col.name in FLAGGED_COLUMNS
            rows.append(Row(cell_label(cell, cells), cell.run_id, cell.status, cell.error,
                            values, equivalence_note(cell.attack, cell.target)))
        _mark_best(rows, members, columns)
        groups.append(Group(target, rows))
    return MetricTable(columns, groups, notes.reasons, show_run, interval_note(cells))


def transfer_flagged(cell: CellRecord, subset: str = Subset.ALL) -> bool:
    """Whether ``cell``'s transfer gap on ``subset`` exceeds :data:`FLAG_GAP` with its interval
    above 0 (without a stored interval, the value alone decides)."""
    m = cell.measurement(subset, "transfer_gap")
    if m is None or m.value is None or m.value <= FLAG_GAP:
        return False
    iv = cell.interval(subset, "transfer_gap")
    return iv is None or iv.low is None or iv.low > 0


def cell_stat(cell: CellRecord, name: str, subset: str = Subset.ALL) -> Stat | None:
    """The value of ``name`` on ``subset`` with its interval, for ranking (``None``: none)."""
    m = cell.measurement(subset, name) if cell.done else None
    if m is None or m.value is None:
        return None
    iv = cell.interval(subset, name)
    low, high = (iv.low, iv.high) if iv is not None else (None, None)
    return Stat(m.value, None, 1, low, high)


def _mark_best(rows: list[Row], cells: list[CellRecord], columns: list[Column]) -> None:
    for j, column in enumerate(columns):
        if column.direction not in ARROWS:
            continue
        top, alone = leaders([cell_stat(c, column.name) for c in cells],
                             column.direction == "higher")
        for i in top:
            rows[i].values[j].best = alone
            rows[i].values[j].tied = not alone


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
