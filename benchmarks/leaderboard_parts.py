"""Run the leaderboard's experiments in parts into one results directory (issue 22).

The whole set — ``table1-ext`` (which holds ``table1`` and ``efficiency``),
``table2``–``table6`` and ``defenses`` at ``mini`` with 3 seeds — is many hours on 2 CPU cores, so it is split into
parts of one experiment and a few targets each, small enough to finish inside a working session
with the priors they train. Each call starts the first part that has no run in the results
directory, or resumes the first that has unfinished cells (``mibench run --resume RUN``), and
goes on until ``--parts`` parts ran or ``--until`` (a UTC clock time) has passed; a part started
before ``--until`` runs to its end. Then::

    mibench report --all --results-dir DIR --leaderboard

writes ``leaderboard.md``: each experiment's table merges the runs that hold its cells.

Usage: ``python benchmarks/leaderboard_parts.py --results-dir DIR --cache-dir DIR
[--mibench PATH] [--archive DIR] [--parts N] [--until HH:MM] [--list]``. ``--mibench`` names
the ``mibench`` executable of a checkout kept at the leaderboard's commit (all tables come from
one commit). ``--archive`` keeps finished parts as ``mibench results export`` files
(``results/leaderboard/`` in this repository): they are imported into the results directory
first, and each part is exported there once all its cells are done, so a later session on a
fresh machine goes on where this one stopped.
"""

from __future__ import annotations

import argparse
import datetime as dt
import subprocess
import sys
from pathlib import Path

from mibench.archive import SUFFIX, export_run, import_runs
from mibench.store import DB_NAME, CellStatus, Store

SEEDS = 3
PRESET = "mini"
# (experiment, --targets, --attacks); None: all of the experiment's. Ordered so that parts which
# share priors follow each other (the target-independent priors of table1-ext, a target's
# FGMIA prior); a session retrains what its cache lacks.
PARTS: tuple[tuple[str, str | None, str | None], ...] = (
    ("table6", None, None),
    ("table1-ext", "ir152", None),
    ("table1-ext", "arcface-18", None),
    ("table1-ext", "cosface-18", None),
    ("table1-ext", "evolve", None),
    ("table1-ext", "facenet", None),
    ("table5", None, None),
    ("table2", "cosface-18,cosface-34,cosface-50,cosface-100", None),
    ("table4", None, None),
    ("table2", "arcface-18,arcface-34,arcface-50,arcface-100", None),
    ("table3", None, None),
    ("defenses", "ir152,ir152+*", "gmi,fgmia,kedmi"),
)


def status(store: Store) -> dict[tuple, tuple[str, int, int]]:
    """Part → (run id, finished cells, cells) of the run that holds it (the latest)."""
    found = {}
    for run_id in store.run_ids():
        meta = store.run(run_id)
        part = _command_part(meta["command"])
        if part in PARTS:
            cells = store.cells(run_id)
            done = sum(c["status"] == CellStatus.DONE for c in cells)
            found[part] = (run_id, done, len(cells))
    return found


def _command_part(command: str) -> tuple[str, str | None, str | None]:
    """(experiment, targets, attacks) as the run's command gave them."""
    words = command.split()
    value = {flag: words[i + 1] for i, flag in enumerate(words[:-1])
             if flag in ("--experiment", "--targets", "--attacks")}
    return (value.get("--experiment", ""), value.get("--targets"), value.get("--attacks"))


def command(mibench: str, part: tuple[str, str | None, str | None], results: Path,
            cache: Path) -> list[str]:
    experiment, targets, attacks = part
    return [mibench, "run", "--experiment", experiment,
            *(["--targets", targets] if targets else []),
            *(["--attacks", attacks] if attacks else []),
            "--preset", PRESET, "--seeds", str(SEEDS),
            "--results-dir", str(results), "--cache-dir", str(cache)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results-dir", type=Path, required=True)
    parser.add_argument("--cache-dir", type=Path, required=True)
    parser.add_argument("--mibench", default="mibench")
    parser.add_argument("--archive", type=Path, help="folder of exported finished parts")
    parser.add_argument("--parts", type=int, default=len(PARTS))
    parser.add_argument("--until", help="UTC HH:MM after which no part starts")
    parser.add_argument("--list", action="store_true", help="print each part's state and exit")
    args = parser.parse_args(argv)
    if args.archive and not args.list:
        for path in sorted(args.archive.glob(f"*{SUFFIX}")):
            added = import_runs(Store(args.results_dir), path)
            print(f"{path.name}: {'imported' if added else 'held already'}")
    store = Store(args.results_dir) if (args.results_dir / DB_NAME).is_file() else None
    found = status(store) if store else {}
    if args.list:
        for part in PARTS:
            run_id, done, total = found.get(part, ("-", 0, 0))
            print(f"{' '.join(p or '*' for p in part):70s} {run_id:24s} {done}/{total or '?'}")
        return 0
    deadline = None
    if args.until:
        hour, minute = map(int, args.until.split(":"))
        now = dt.datetime.now(dt.timezone.utc)
        deadline = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
        if deadline < now:
            deadline += dt.timedelta(days=1)
    ran = 0
    for part in PARTS:
        run_id, done, total = found.get(part, (None, 0, 0))
        if run_id is not None and done == total:
            continue
        if ran >= args.parts or (deadline and dt.datetime.now(dt.timezone.utc) >= deadline):
            break
        cmd = command(args.mibench, part, args.results_dir, args.cache_dir)
        if run_id is not None:
            cmd = [args.mibench, "run", "--resume", run_id, "--results-dir",
                   str(args.results_dir)]
        print(f"[{dt.datetime.now(dt.timezone.utc):%H:%M:%S}] {' '.join(cmd)}", flush=True)
        code = subprocess.call(cmd)
        print(f"[{dt.datetime.now(dt.timezone.utc):%H:%M:%S}] exit {code}", flush=True)
        ran += 1
        store = Store(args.results_dir)
        run_id, done, total = status(store).get(part, (None, 0, 0))
        if args.archive and run_id is not None and done == total:
            print(f"exported {export_run(store, run_id, args.archive)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
