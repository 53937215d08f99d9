"""Wall time of ``make run``'s job by stage, cold and warm (issue #8's speed budget).

    .venv/bin/python benchmarks/run_budget.py [--preset mini] [--attacks all] [--targets arcface]
        [--passes cold,warm] [--cache-dir DIR] [--threads 2] [--workers N]

The job is ``mibench run --attacks all --targets arcface`` followed by ``mibench report``.
``cold`` starts from an empty cache (``--cache-dir``, default a new temporary directory), so the
world, the targets, the evaluation model and every prior are built; ``warm`` repeats the job on
the same cache and results directory (as a second ``make run`` would), where only the attacks,
their metrics and the report run. Stages: world, each
target, evaluation model, then per attack its prior (``prepare``), attack (invert + select)
and metrics, the rest of the harness (image writing, store), and the report. Cells run as
``mibench run`` runs them (``--workers``, default auto: on 2 cores two one-thread worker
processes); with several workers the per-cell stages are worker time and overlap, so they add
up to more than "all cells, wall" (the harness's wall time). Budgets at ``mini`` on 2 CPU
cores: cold ≤ 30 min, warm ≤ 5 min. The last table gives every attack's time and target
queries per identity from the last pass (one run, one machine).
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import torch

from mibench.cache import Cache
from mibench.executors import choose_executor
from mibench.harness import Harness
from mibench.registry import TARGETS
from mibench.reports.render import write_report
from mibench.reports.runs import load_run
from mibench.runconfig import build_world, resolve
from mibench.store import Store, Subset
from mibench.targets.zoo import get_entry, load_entry, load_evaluator

BUDGET_S = {"cold": 30 * 60.0, "warm": 5 * 60.0}


class Stopwatch:
    """Named stages in the order they ran."""

    def __init__(self) -> None:
        self.stages: dict[str, float] = {}

    def time(self, name: str, fn, *args, **kwargs):
        clock = time.perf_counter()
        out = fn(*args, **kwargs)
        self.stages[name] = self.stages.get(name, 0.0) + time.perf_counter() - clock
        return out


def one_pass(preset: str, attacks: str, targets: str, cache_dir: Path, results_dir: Path,
             workers: int | None) -> tuple[Stopwatch, list]:
    tree = resolve(preset, flags={"attacks": attacks, "targets": targets, "workers": workers,
                                  "cache_dir": str(cache_dir), "results_dir": str(results_dir)})
    cache = Cache(cache_dir)
    watch = Stopwatch()
    clock = time.perf_counter()
    world = watch.time("world", build_world, tree, cache, progress=False)
    for name in TARGETS.expand(targets):
        watch.time(f"target {name}", load_entry, get_entry(name), world, cache, preset, "cpu",
                   progress=False)
    watch.time("evaluation model", load_evaluator, world, cache, preset, "cpu", progress=False)
    harness = Harness(tree, show_progress=False)
    run_id = harness.start(command=f"benchmarks/run_budget.py {attacks} × {targets}")
    harness_clock = time.perf_counter()
    harness.execute(run_id, choose_executor(tree["run"]))
    harness_s = time.perf_counter() - harness_clock
    cells = Store(results_dir).cells(run_id)
    in_cells = 0.0
    for cell in cells:
        timings = cell["timings"]
        for stage, keys in (("prior", ("prepare_s",)), ("attack", ("attack_s", "select_s")),
                            ("metrics", ("eval_s",))):
            seconds = sum(timings.get(key, 0.0) for key in keys)
            watch.stages[f"{stage} {cell['attack']}"] = seconds
            in_cells += seconds
    watch.stages["all cells, wall"] = harness_s
    if harness_s >= in_cells:  # one worker: what the cells' own stages do not cover
        watch.stages["harness rest (loading, images, store)"] = harness_s - in_cells
    run = load_run(Store(results_dir), run_id)
    watch.time("report", write_report, [run], results_dir / "report", cache_dir=str(cache_dir),
               progress=False)
    watch.stages["total"] = time.perf_counter() - clock
    accuracy = {(m["attack"], m["target"]): m["value"] for m in Store(results_dir).metrics(run_id)
                if m["subset"] == Subset.ALL and m["name"] == "eval_acc1"}
    for cell in cells:
        cell["eval_acc1"] = accuracy.get((cell["attack"], cell["target"]))
    return watch, cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="mini")
    parser.add_argument("--attacks", default="all")
    parser.add_argument("--targets", default="arcface")
    parser.add_argument("--passes", default="cold,warm", help="comma list of cold, warm")
    parser.add_argument("--cache-dir", help="cache to use (default: a new empty directory)")
    parser.add_argument("--threads", type=int, default=2,
                        help="torch threads of this process (workers split the cores anyway)")
    parser.add_argument("--workers", type=int, help="as `mibench run --workers` (default auto)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="run-budget-"))
    cache_dir = Path(args.cache_dir) if args.cache_dir else work / "cache"
    print(f"{platform.machine()}, {torch.get_num_threads()} torch threads, preset {args.preset}, "
          f"cache {cache_dir}")
    results = {}
    for name in args.passes.split(","):
        results[name], cells = one_pass(args.preset, args.attacks, args.targets, cache_dir,
                                        work / "runs", args.workers)
        print(f"{name}: {results[name].stages['total']:.0f} s "
              f"(budget {BUDGET_S.get(name, float('nan')):.0f} s)", flush=True)
    stages = list(dict.fromkeys(s for watch in results.values() for s in watch.stages))
    print("\n| stage | " + " | ".join(f"{n} (s)" for n in results) + " |")
    print("|---|" + "---:|" * len(results))
    for stage in stages:
        print(f"| {stage} | " + " | ".join(f"{w.stages.get(stage, 0.0):.1f}"
                                           for w in results.values()) + " |")
    print("\n| attack | s / identity | forward / identity | gradient / identity | Eval Acc@1 |")
    print("|---|---:|---:|---:|---:|")
    for cell in cells:
        per_id = cell["queries"].get("per_identity", {})
        acc = "n/a" if cell["eval_acc1"] is None else f"{100 * cell['eval_acc1']:.1f} %"
        print(f"| {cell['attack']} | {cell['timings'].get('attack_s_per_identity', 0):.2f} | "
              f"{per_id.get('forward', 0):.0f} | {per_id.get('gradient', 0):.0f} | {acc} |")


if __name__ == "__main__":
    main()
