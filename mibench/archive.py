"""Runs moved between results directories: ``mibench results export`` / ``import``.

An exported run is its rows of the store (:mod:`mibench.store`: the run, its cells, metrics and
intervals with their resampled values, so seeds still combine) in a SQLite file compressed with
xz, ``<run>.db.xz``; images stay behind (a report of an imported run says they are missing).
Importing adds the runs a store does not hold yet, so parts of a leaderboard run on several
machines, or in several sessions, meet in one results directory for ``mibench report --all``.
"""

from __future__ import annotations

import lzma
import sqlite3
import tempfile
from contextlib import closing
from pathlib import Path
from typing import Sequence

from mibench.cache import atomic_write_bytes
from mibench.errors import MibenchError
from mibench.store import Store

TABLES = ("runs", "cells", "metrics", "intervals")
SUFFIX = ".db.xz"


def copy_runs(source: Path, dest: Path, run_ids: Sequence[str] | None = None) -> list[str]:
    """Copy the rows of ``run_ids`` (``None``: every run) from the store file ``source`` into
    the store file ``dest``, skipping runs ``dest`` already holds; returns the ids copied."""
    with closing(sqlite3.connect(dest, timeout=30)) as db:
        db.execute("ATTACH DATABASE ? AS src", (str(source),))
        have = {row[0] for row in db.execute("SELECT run_id FROM main.runs")}
        offered = [row[0] for row in db.execute("SELECT run_id FROM src.runs ORDER BY created")]
        missing = [r for r in (run_ids or ()) if r not in offered]
        if missing:
            raise MibenchError(f"no run {', '.join(missing)} in {source}")
        chosen = [r for r in (offered if run_ids is None else run_ids) if r not in have]
        with db:
            for table in TABLES:
                info = db.execute(f"PRAGMA main.table_info({table})")
                columns = ", ".join(row[1] for row in info)
                db.executemany(f"INSERT INTO main.{table} ({columns}) SELECT {columns} "
                               f"FROM src.{table} WHERE run_id = ?", [(r,) for r in chosen])
        db.execute("DETACH DATABASE src")
    return chosen


def export_run(store: Store, run_id: str, out_dir: Path) -> Path:
    """``run_id`` of ``store`` as ``out_dir/<run_id>.db.xz`` (written aside, then renamed in)."""
    store.run(run_id)  # an unknown id is a one-line error
    with tempfile.TemporaryDirectory() as tmp:
        part = Store(tmp)
        copy_runs(store.path, part.path, [run_id])
        data = lzma.compress(part.path.read_bytes(), preset=9)
    path = Path(out_dir) / f"{run_id}{SUFFIX}"
    atomic_write_bytes(path, data)
    return path


def import_runs(store: Store, path: Path) -> list[str]:
    """Add the runs of the export ``path`` that ``store`` lacks; returns their ids."""
    try:
        data = lzma.decompress(Path(path).read_bytes())
    except FileNotFoundError:
        raise MibenchError(f"no exported run at {path}") from None
    except lzma.LZMAError as err:
        raise MibenchError(f"{path} is not an exported run ({err}); export it again with "
                           f"`mibench results export`") from None
    with tempfile.TemporaryDirectory() as tmp:
        part = Path(tmp) / "part.db"
        part.write_bytes(data)
        try:
            return copy_runs(part, store.path)
        except sqlite3.DatabaseError as err:
            raise MibenchError(f"{path} holds no mibench results ({err}); export it again "
                               f"with `mibench results export`") from None
