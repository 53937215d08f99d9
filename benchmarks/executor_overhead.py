"""Wall time of one `smoke` grid with ``--executor local`` against ``--executor ray``.

    .venv/bin/python benchmarks/executor_overhead.py [--attacks gmi,fmi]
        [--targets arcface,ir152] [--repeats 1]

Each executor runs ``mibench run --preset smoke`` over the grid twice: from an empty cache
(world, targets, evaluation model and priors are trained: ``cold``) and again on that cache
(everything is loaded: ``warm``). Ray starts a private instance with the machine's CPUs, so on
2 CPUs it runs two jobs at a time, each with one torch thread; the local executor runs the cells
one after another with ``OMP_NUM_THREADS=1`` too. The fastest of ``--repeats`` runs is
printed, not asserted: at `smoke` size a job takes about a second, so Ray's start-up and
per-job costs dominate and ``ray`` is slower; the executor pays off when cells take minutes to
hours (`mini`, `paper`) and there are GPUs for them.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_grid(executor: str, cache: Path, results: Path, attacks: str, targets: str) -> float:
    """Seconds of one ``mibench run`` (a fresh process, as a user runs it)."""
    cmd = [sys.executable, "-m", "mibench", "run", "--preset", "smoke", "--attacks", attacks,
           "--targets", targets, "--executor", executor, "--cache-dir", str(cache),
           "--results-dir", str(results), "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "RAY_AUTH_MODE": "disabled"}
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env=env)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attacks", default="gmi,fmi")
    parser.add_argument("--targets", default="arcface,ir152")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each measurement")
    args = parser.parse_args()
    cells = len(args.attacks.split(",")) * len(args.targets.split(","))
    print(f"smoke grid: {args.attacks} × {args.targets} ({cells} cells), "
          f"{os.cpu_count()} CPUs")
    print("executor | cold cache (s) | warm cache (s)")
    print("---|---|---")
    for executor in ("local", "ray"):
        cold, warm = [], []
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as tmp:
                root = Path(tmp)
                cold.append(run_grid(executor, root / "cache", root / "cold", args.attacks,
                                     args.targets))
                warm.append(run_grid(executor, root / "cache", root / "warm", args.attacks,
                                     args.targets))
        print(f"{executor} | {min(cold):.1f} | {min(warm):.1f}")


if __name__ == "__main__":
    main()
