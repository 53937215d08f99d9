"""Results store: one SQLite database per results directory (design.md §4).

Tables: ``runs`` (resolved config, package versions, device, seed, warnings), ``cells`` (one per
(attack, target, aux, seed) of a run: status, timings, queries, error) and ``metrics`` (one row
per cell, image set and metric: a value, or the reason it could not be computed) and
``intervals`` (one row per metric value: its 95 % interval, method, resampling seed and counts,
the resampled values as float32 bytes so seeds combine later, and what the value rests on, e.g.
sample counts; :mod:`mibench.metrics.bootstrap`). A cell's metrics, intervals and its ``done``
status are written in one transaction, so a cell is either finished
with all its numbers or not finished at all; ``--resume`` redoes exactly the unfinished cells.
Images live beside the database in ``<run>/<attack>/<target>/images/<identity>/<k>.png``.
"""

from __future__ import annotations

import json
import sqlite3
import time
from contextlib import closing, contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Iterator

from mibench.errors import MibenchError

DB_NAME = "mibench.db"
SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, created REAL NOT NULL, config TEXT NOT NULL,
    versions TEXT NOT NULL, device TEXT NOT NULL, command TEXT NOT NULL,
    warnings TEXT NOT NULL DEFAULT '[]'
);
CREATE TABLE IF NOT EXISTS cells (
    run_id TEXT NOT NULL REFERENCES runs(run_id), attack TEXT NOT NULL, target TEXT NOT NULL,
    aux TEXT NOT NULL, seed INTEGER NOT NULL, status TEXT NOT NULL,
    started REAL, finished REAL, timings TEXT, queries TEXT, error TEXT, images TEXT,
    PRIMARY KEY (run_id, attack, target, aux, seed)
);
CREATE TABLE IF NOT EXISTS metrics (
    run_id TEXT NOT NULL, attack TEXT NOT NULL, target TEXT NOT NULL, aux TEXT NOT NULL,
    seed INTEGER NOT NULL, subset TEXT NOT NULL, name TEXT NOT NULL, value REAL, reason TEXT,
    PRIMARY KEY (run_id, attack, target, aux, seed, subset, name),
    CHECK ((value IS NULL) != (reason IS NULL))
);
CREATE TABLE IF NOT EXISTS intervals (
    run_id TEXT NOT NULL, attack TEXT NOT NULL, target TEXT NOT NULL, aux TEXT NOT NULL,
    seed INTEGER NOT NULL, subset TEXT NOT NULL, name TEXT NOT NULL, low REAL, high REAL,
    method TEXT NOT NULL, identities INTEGER NOT NULL, boot_seed INTEGER NOT NULL,
    replicates BLOB NOT NULL, reason TEXT, detail TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (run_id, attack, target, aux, seed, subset, name),
    CHECK ((low IS NULL) != (reason IS NULL))
);
"""
INTERVAL_COLUMNS = ("subset", "name", "low", "high", "method", "identities", "boot_seed",
                    "replicates", "reason", "detail")
IntervalRow = tuple[str, str, float | None, float | None, str, int, int, bytes, str | None, str]


class CellStatus(StrEnum):
    """Where a cell is in its life: registered, handed to a worker, finished, or failed."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class Subset(StrEnum):
    """The image sets a cell's metrics are computed on: every sample, or each identity's
    selected one."""

    ALL = "all"
    SELECTED = "selected"


@dataclass(frozen=True)
class CellKey:
    """One grid cell of a run."""

    run_id: str
    attack: str
    target: str
    aux: str
    seed: int

    def as_tuple(self) -> tuple[str, str, str, str, int]:
        return (self.run_id, self.attack, self.target, self.aux, self.seed)


class Store:
    """The SQLite database of one results directory."""

    def __init__(self, results_dir: str | Path) -> None:
        self.root = Path(results_dir)
        self.root.mkdir(parents=True, exist_ok=True)
        self.path = self.root / DB_NAME
        with self._connect() as db:
            db.executescript(SCHEMA)
            _add_missing_columns(db)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """One transaction: committed on success, rolled back on any error."""
        try:
            with closing(sqlite3.connect(self.path, timeout=30)) as db:
                db.row_factory = sqlite3.Row
                with db:
                    yield db
        except (sqlite3.IntegrityError, sqlite3.ProgrammingError):
            raise
        except sqlite3.DatabaseError as err:
            raise MibenchError(f"results database {self.path} is unreadable ({err}); move it "
                               f"away or pass another --results-dir") from err

    def create_run(self, run_id: str, config: dict[str, Any], versions: dict[str, str],
                   device: str, command: str) -> None:
        with self._connect() as db:
            db.execute("INSERT INTO runs (run_id, created, config, versions, device, "
                       "command) VALUES (?, ?, ?, ?, ?, ?)",
                       (run_id, time.time(), json.dumps(config), json.dumps(versions), device,
                        command))

    def run(self, run_id: str) -> dict[str, Any]:
        with self._connect() as db:
            row = db.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            raise MibenchError(f"no run {run_id!r} in {self.path}; see the run ids with "
                               f"`mibench report --list`")
        return {**dict(row), "config": json.loads(row["config"]),
                "versions": json.loads(row["versions"]),
                "warnings": json.loads(row["warnings"])}

    def add_run_warning(self, run_id: str, warning: str) -> bool:
        """Store ``warning`` with the run, once; ``True`` when it is new."""
        with self._connect() as db:
            row = db.execute("SELECT warnings FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            warnings = json.loads(row[0]) if row else []
            if row is None or warning in warnings:
                return False
            db.execute("UPDATE runs SET warnings = ? WHERE run_id = ?",
                       (json.dumps([*warnings, warning]), run_id))
        return True

    def run_ids(self) -> list[str]:
        """All run ids, oldest first."""
        with self._connect() as db:
            return [r[0] for r in db.execute("SELECT run_id FROM runs ORDER BY created")]

    def add_cells(self, keys: list[CellKey]) -> None:
        """Register cells as pending (cells already present keep their state)."""
        with self._connect() as db:
            db.executemany("INSERT OR IGNORE INTO cells (run_id, attack, target, aux, seed, "
                           "status) VALUES (?, ?, ?, ?, ?, ?)",
                           [(*k.as_tuple(), CellStatus.PENDING) for k in keys])

    def status(self, key: CellKey) -> CellStatus | None:
        with self._connect() as db:
            row = db.execute("SELECT status FROM cells WHERE run_id=? AND attack=? AND "
                             "target=? AND aux=? AND seed=?", key.as_tuple()).fetchone()
        return None if row is None else CellStatus(row[0])

    def start_cell(self, key: CellKey) -> None:
        with self._connect() as db:
            for table in ("metrics", "intervals"):
                db.execute(f"DELETE FROM {table} WHERE run_id=? AND attack=? AND target=? AND "
                           f"aux=? AND seed=?", key.as_tuple())
            db.execute("UPDATE cells SET status=?, started=?, finished=NULL, "
                       "error=NULL WHERE run_id=? AND attack=? AND target=? AND aux=? AND "
                       "seed=?", (CellStatus.RUNNING, time.time(), *key.as_tuple()))

    def finish_cell(self, key: CellKey, metrics: list[tuple[str, str, float | None, str | None]],
                    timings: dict[str, float], queries: dict[str, Any], images: str,
                    intervals: tuple[IntervalRow, ...] = ()) -> None:
        """Store a finished cell: ``metrics`` rows are (subset, name, value, reason),
        ``intervals`` rows :data:`INTERVAL_COLUMNS`."""
        with self._connect() as db:
            db.executemany("INSERT OR REPLACE INTO metrics VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                           [(*key.as_tuple(), subset, name, value, reason)
                            for subset, name, value, reason in metrics])
            db.executemany(f"INSERT OR REPLACE INTO intervals (run_id, attack, target, aux, "
                           f"seed, {', '.join(INTERVAL_COLUMNS)}) VALUES "
                           f"({', '.join('?' * (5 + len(INTERVAL_COLUMNS)))})",
                           [(*key.as_tuple(), *row) for row in intervals])
            db.execute("UPDATE cells SET status=?, finished=?, timings=?, queries=?, "
                       "images=? WHERE run_id=? AND attack=? AND target=? AND aux=? AND seed=?",
                       (CellStatus.DONE, time.time(), json.dumps(timings), json.dumps(queries),
                        images, *key.as_tuple()))

    def fail_cell(self, key: CellKey, error: str) -> None:
        with self._connect() as db:
            db.execute("UPDATE cells SET status=?, finished=?, error=? WHERE run_id=? "
                       "AND attack=? AND target=? AND aux=? AND seed=?",
                       (CellStatus.FAILED, time.time(), error, *key.as_tuple()))

    def cells(self, run_id: str) -> list[dict[str, Any]]:
        with self._connect() as db:
            rows = db.execute("SELECT * FROM cells WHERE run_id=? ORDER BY attack, target, aux, "
                              "seed", (run_id,)).fetchall()
        out = []
        for row in rows:
            cell = dict(row)
            for field in ("timings", "queries"):
                cell[field] = json.loads(cell[field]) if cell[field] else {}
            out.append(cell)
        return out

    def cell_costs(self, preset: str) -> dict[tuple[str, str], float]:
        """Seconds of attack, selection and metrics of the latest finished cell of each
        (attack, target) in runs at ``preset``: what a scheduler may expect such a cell to
        cost (priors excluded: they are trained once)."""
        with self._connect() as db:
            rows = db.execute("SELECT c.attack, c.target, c.timings, r.config FROM cells c "
                              "JOIN runs r USING (run_id) WHERE c.status=? "
                              "ORDER BY c.finished", (CellStatus.DONE,)).fetchall()
        costs = {}
        for attack, target, timings, config in rows:
            if json.loads(config).get("preset") == preset:
                spent = json.loads(timings or "{}")
                costs[(attack, target)] = sum(spent.get(k, 0.0)
                                              for k in ("attack_s", "select_s", "eval_s"))
        return costs

    def metrics(self, run_id: str) -> list[dict[str, Any]]:
        with self._connect() as db:
            rows = db.execute("SELECT * FROM metrics WHERE run_id=? ORDER BY attack, target, "
                              "aux, seed, subset, name", (run_id,)).fetchall()
        return [dict(r) for r in rows]

    def intervals(self, run_id: str) -> list[dict[str, Any]]:
        """The intervals of ``run_id`` (none for runs stored before intervals existed)."""
        with self._connect() as db:
            rows = db.execute("SELECT * FROM intervals WHERE run_id=? ORDER BY attack, target, "
                              "aux, seed, subset, name", (run_id,)).fetchall()
        return [{**dict(r), "detail": json.loads(r["detail"])} for r in rows]


def _add_missing_columns(db: sqlite3.Connection) -> None:
    """Bring a database written by an older mibench up to :data:`SCHEMA` (``runs.warnings``;
    the ``intervals`` table is created by the schema script, empty for older runs)."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(runs)")}
    if "warnings" not in columns:
        db.execute("ALTER TABLE runs ADD COLUMN warnings TEXT NOT NULL DEFAULT '[]'")
