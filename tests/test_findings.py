"""Intervals in reports: ``value ± half-width``, best only where intervals separate, tied ranks
in the leaderboard, findings decided with the seed-combined intervals."""

from __future__ import annotations

import numpy as np

from mibench.cli import main
from mibench.findings import TIED, Stat, compare, decide, leaders
from mibench.metrics.bootstrap import PERCENTILE, Interval, to_row
from mibench.reports.experiment import experiment_markdown, experiment_view
from mibench.reports.leaderboard import leaderboard_markdown
from mibench.reports.runs import load_run
from mibench.reports.tables import metric_table
from mibench.store import CellKey, Store

Cells = dict[tuple[str, str, int], dict[str, tuple[float, float, float]]]


def stored(store: Store, run_id: str, cells: Cells, experiment: str = "") -> None:
    """A run whose cells (attack, target, seed) have metric (value, low, high) with intervals
    whose replicates are a constant offset of one shared pattern (so seeds combine)."""
    store.create_run(run_id, {"preset": "smoke", "run": {"experiment": experiment}},
                     {"commit": "abc1234"}, "cpu", "mibench run")
    pattern = np.linspace(-1.0, 1.0, 1000)
    for (attack, target, seed), metrics in cells.items():
        key = CellKey(run_id, attack, target, "similar", seed)
        store.add_cells([key])
        store.start_cell(key)
        rows, intervals = [], []
        for name, (value, low, high) in metrics.items():
            rows += [(subset, name, value, None) for subset in ("all", "selected")]
            reps = value + pattern * (high - low) / 2 / 0.95
            iv = Interval(name, low, high, PERCENTILE, 10, 0, reps)
            intervals += [to_row(subset, iv) for subset in ("all", "selected")]
        store.finish_cell(key, rows, {}, {}, "", tuple(intervals))


def test_compare_and_leaders_use_intervals_and_fall_back_to_values():
    a, b = Stat(0.8, None, 1, 0.7, 0.9), Stat(0.6, None, 1, 0.5, 0.75)
    assert compare(a, b, higher=True) == 0 and leaders([a, b], higher=True) == ({0, 1}, False)
    c = Stat(0.2, None, 1, 0.1, 0.3)
    assert compare(a, c, True) == 1 and compare(a, c, False) == -1
    assert leaders([a, c], higher=True) == ({0}, True)
    assert compare(Stat(0.8, None, 1), Stat(0.79, None, 1), True) == 1   # no interval: values
    assert decide([1, 1]) is True and decide([1, 0]) == TIED and decide([0, -1]) is False


def test_tables_show_plus_minus_and_mark_best_only_where_intervals_separate(tmp_path):
    store = Store(tmp_path)
    stored(store, "r1", {("gmi", "arcface-18", 0): {"eval_acc1": (0.8, 0.7, 0.9),
                                                     "knn_l2": (0.5, 0.3, 0.7)},
                         ("ppa", "arcface-18", 0): {"eval_acc1": (0.2, 0.1, 0.3),
                                                     "knn_l2": (0.4, 0.2, 0.6)},
                         ("fmi", "arcface-18", 0): {"eval_acc1": (0.25, 0.05, 0.45),
                                                     "knn_l2": (0.9, 0.8, 1.0)}})
    table = metric_table(load_run(store, "r1").cells)
    rows = {row.attack: row.values for row in table.groups[0].rows}
    assert rows["gmi"][0].all.text == "0.800 ± 0.100" and rows["gmi"][0].best
    assert not any(rows[a][0].best or rows[a][0].tied for a in ("ppa", "fmi"))
    assert [(rows[a][1].best, rows[a][1].tied) for a in ("gmi", "ppa", "fmi")] == [
        (False, True), (False, True), (False, False)]                # knn_l2: gmi ~ ppa
    assert "percentile bootstrap over identities (1000 resamples, seed 0)" in table.intervals
    board = leaderboard_markdown([load_run(store, "r1")])
    ranks = [line.split(" | ")[0:2] for line in board.splitlines() if line.startswith("| 1")
             or line.startswith("| 2") or line.startswith("| 3")]
    assert ranks == [["| 1", "gmi"], ["| 2=", "fmi"], ["| 2=", "ppa"]]   # fmi, ppa overlap


def test_findings_decide_with_intervals_combined_over_seeds(tmp_path):
    store = Store(tmp_path)
    order = ("fgmia", "fgmia-no-scaleft", "fgmia-no-transf", "fgmia-no-fg")
    separated = {(a, "ir152", seed): {"eval_acc1": (v, v - 0.05, v + 0.05)}
                 for a, v in zip(order, (0.9, 0.7, 0.5, 0.3)) for seed in (0, 1)}
    stored(store, "r1", separated, "table6")
    view = experiment_view(load_run(store, "r1"))
    [verdict] = view.verdicts
    assert verdict.holds is True and not verdict.tied
    assert "fgmia 0.9 [0.85, 0.95]" in verdict.detail                   # combined interval
    assert dict(view.rows)["fgmia"][0] == "0.900 ± 0.050"
    overlapping = {(a, "ir152", 0): {"eval_acc1": (v, v - 0.15, v + 0.15)}
                   for a, v in zip(order, (0.9, 0.7, 0.5, 0.3))}
    stored(store, "r2", overlapping, "table6")
    [tied] = experiment_view(load_run(store, "r2")).verdicts
    assert tied.tied and tied.holds is None
    assert "| tied |" in experiment_markdown(experiment_view(load_run(store, "r2")))


def test_table1_ext_decides_kedmi_and_lomma_against_their_bases():
    from mibench.experiments import get_experiment
    from mibench.findings import ExperimentTable

    ext = get_experiment("table1-ext")
    assert set(get_experiment("table1").attacks) < set(ext.attacks)
    assert {"kedmi", "gmi+lomma", "kedmi+lomma"} <= set(ext.attacks) and len(ext.cells()) == 55
    acc = {"gmi": (0.2, 0.1, 0.3), "kedmi": (0.6, 0.5, 0.7), "gmi+lomma": (0.25, 0.15, 0.35),
           "kedmi+lomma": (0.3, 0.2, 0.4)}
    table = ExperimentTable(rows=list(acc), groups=["ir152"], columns=("eval_acc1",), entries={
        (attack, "ir152"): {"eval_acc1": Stat(v, None, 1, lo, hi)}
        for attack, (v, lo, hi) in acc.items()})
    verdicts = [(v.holds, v.tied) for v in ext.verdicts(table)]
    # KEDMI > GMI; GMI+LOMMA's interval overlaps GMI's: tied; KEDMI+LOMMA below KEDMI
    assert verdicts == [(True, False), (None, True), (False, False)]


def test_a_cell_the_second_evaluator_does_not_confirm_is_flagged(tmp_path):
    store = Store(tmp_path)
    stored(store, "r1", {("gmi", "ir152", 0): {"eval_acc1": (0.9, 0.8, 1.0),
                                               "eval2_acc1": (0.3, 0.2, 0.4),
                                               "transfer_gap": (0.6, 0.5, 0.7)},
                         ("ppa", "ir152", 0): {"eval_acc1": (0.5, 0.4, 0.6),
                                               "eval2_acc1": (0.2, 0.0, 0.45),
                                               "transfer_gap": (0.3, -0.05, 0.65)},  # spans 0
                         ("kedmi", "ir152", 0): {"eval_acc1": (0.8, 0.7, 0.9),
                                                 "eval2_acc1": (0.7, 0.6, 0.8),
                                                 "transfer_gap": (0.1, 0.0, 0.2)}})
    table = metric_table(load_run(store, "r1").cells)
    names = [c.name for c in table.columns]
    assert names == ["eval_acc1", "eval2_acc1", "transfer_gap"]
    flags = {row.attack: [v.flagged for v in row.values] for row in table.groups[0].rows}
    assert flags == {"gmi": [False, True, True], "kedmi": [False] * 3, "ppa": [False] * 3}
    board = leaderboard_markdown([load_run(store, "r1")])
    assert "0.300 ± 0.100 ⚑ | 0.600 ± 0.100 ⚑" in board and board.count("⚑") == 3  # + legend
    assert "transfer_gap = eval_acc1 − eval2_acc1 > 0.25" in board
    out = tmp_path / "out"
    assert main(["report", "--results-dir", str(tmp_path), "--out", str(out), "--no-figures",
                 "--quiet"]) == 0
    html = (out / "index.html").read_text()
    assert html.count(" flag\"") == 2 and "<b>⚑</b>: the second evaluator grants" in html
