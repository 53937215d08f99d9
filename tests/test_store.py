"""The results store: cells are atomic, resumable and never duplicated."""

from __future__ import annotations

import sqlite3

import pytest

from mibench.errors import MibenchError
from mibench.store import CellKey, Store


@pytest.fixture
def store(tmp_path) -> Store:
    s = Store(tmp_path / "runs")
    s.create_run("r1", {"preset": "smoke"}, {"torch": "2.14.1"}, "cpu", "mibench run")
    return s


def key(attack: str = "gmi", target: str = "arcface-18") -> CellKey:
    return CellKey("r1", attack, target, "similar", 0)


def test_cells_go_pending_running_done(store):
    store.add_cells([key(), key("ppa")])
    assert store.status(key()) == "pending"
    store.start_cell(key())
    assert store.status(key()) == "running"
    store.finish_cell(key(), [("all", "eval_acc1", 0.5, None), ("all", "fid", None, "no weights")],
                      {"attack_s": 1.0}, {"forward": 10}, "r1/gmi/arcface-18/images")
    assert store.status(key()) == "done"
    cell = next(c for c in store.cells("r1") if c["attack"] == "gmi")
    assert cell["timings"] == {"attack_s": 1.0} and cell["queries"] == {"forward": 10}
    rows = {(m["name"], m["value"], m["reason"]) for m in store.metrics("r1")}
    assert rows == {("eval_acc1", 0.5, None), ("fid", None, "no weights")}


def test_a_metric_needs_exactly_one_of_value_and_reason(store):
    store.add_cells([key()])
    store.start_cell(key())
    with pytest.raises(sqlite3.IntegrityError):
        store.finish_cell(key(), [("all", "fid", None, None)], {}, {}, "")
    assert store.status(key()) == "running" and store.metrics("r1") == []


def test_adding_cells_twice_keeps_finished_ones(store):
    store.add_cells([key()])
    store.start_cell(key())
    store.finish_cell(key(), [("all", "eval_acc1", 1.0, None)], {}, {}, "")
    store.add_cells([key(), key("ppa")])
    assert store.status(key()) == "done" and store.status(key("ppa")) == "pending"
    assert len(store.cells("r1")) == 2


def test_restarting_a_cell_drops_its_old_metrics(store):
    store.add_cells([key()])
    store.start_cell(key())
    store.finish_cell(key(), [("all", "eval_acc1", 1.0, None)], {}, {}, "")
    store.start_cell(key())
    assert store.metrics("r1") == []
    store.fail_cell(key(), "RuntimeError: boom")
    cell = store.cells("r1")[0]
    assert cell["status"] == "failed" and cell["error"] == "RuntimeError: boom"


def test_runs_are_listed_and_unknown_runs_are_clear(store):
    assert store.run_ids() == ["r1"]
    assert store.run("r1")["config"] == {"preset": "smoke"}
    with pytest.raises(MibenchError, match="no run 'r9'"):
        store.run("r9")


def test_a_corrupt_database_is_a_clear_error(tmp_path):
    (tmp_path / "mibench.db").write_bytes(b"not a database at all" * 100)
    with pytest.raises(MibenchError, match="is unreadable"):
        Store(tmp_path)


def test_warnings_are_stored_with_the_run_once(store):
    assert store.run("r1")["warnings"] == []
    assert store.add_run_warning("r1", "only 8 identities") is True
    assert store.add_run_warning("r1", "only 8 identities") is False  # kept once
    assert store.add_run_warning("r9", "no such run") is False
    assert store.run("r1")["warnings"] == ["only 8 identities"]


def test_a_database_without_the_warnings_column_gains_it(tmp_path):
    with sqlite3.connect(tmp_path / "mibench.db") as db:  # the runs table before warnings
        db.execute("CREATE TABLE runs (run_id TEXT PRIMARY KEY, created REAL NOT NULL, "
                   "config TEXT NOT NULL, versions TEXT NOT NULL, device TEXT NOT NULL, "
                   "command TEXT NOT NULL)")
        db.execute("INSERT INTO runs VALUES ('old', 1.0, '{}', '{}', 'cpu', 'mibench run')")
    store = Store(tmp_path)
    assert store.run("old")["warnings"] == []
    store.create_run("new", {}, {}, "cpu", "mibench run")
    assert store.add_run_warning("new", "careful")
    assert store.run("new")["warnings"] == ["careful"]
    assert store.run_ids() == ["old", "new"]
