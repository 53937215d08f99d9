"""Accuracy and training time of every zoo entry at a preset, and the Table III sanity check.

    .venv/bin/python benchmarks/zoo_accuracy.py [--preset mini] [--names all] [--fresh]

Trains (or loads from the cache) every target and the evaluation model in the synthetic world
of the preset and prints: name, kind, parameters, input resolution, private-test accuracy
(open set: identification against the gallery enrolled from private-train) and training
seconds, wall-clock and CPU (as recorded when the entry was trained; CPU seconds sum over
threads, so with ``--threads 1`` they measure the work even while other jobs share the cores).
Budgets at ``mini`` on 2 CPU cores: targets >= 90 % in <= 180 s, the evaluation model >= 95 %
in <= 300 s ("meets budget" judges the wall seconds). Then, for the fine-tuned chains (paper
Table III): per round, the relative weight change from the previous round, and private-train
identification accuracy and gallery margin (cosine to the own template minus the highest to
another), which must rise round after round.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from mibench.cache import Cache
from mibench.registry import DATASETS
from mibench.targets.finetune import gallery_margin
from mibench.targets.models import OpenSetModel
from mibench.targets.train import accuracy
from mibench.targets.zoo import (EVALUATORS, FINE_TUNE_ROUNDS, ZooModel, awaits_import,
                                 expand_names, get_entry, load_entry, parameter_count)
from mibench.world import World

BUDGET_S = {"target": 180.0, "evaluator": 300.0}
MIN_ACCURACY = {"target": 0.90, "evaluator": 0.95}
CHAINS = ("arcface-18", "cosface-18")


def relative_change(before: ZooModel, after: ZooModel) -> float:
    """‖θ_after − θ_before‖ / ‖θ_before‖ over the floating-point parameters and buffers."""
    old, new = before.target.state_dict(), after.target.state_dict()
    keys = [k for k, v in old.items() if v.is_floating_point() and k != "gallery"]
    diff = sum(float((new[k].cpu() - old[k].cpu()).pow(2).sum()) for k in keys)
    norm = sum(float(old[k].cpu().pow(2).sum()) for k in keys)
    return (diff / norm) ** 0.5


def table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(row, widths)) for row in [header, *rows]]
    lines.insert(1, "-|-".join("-" * w for w in widths))
    return "\n".join(f"| {line} |" for line in lines)


def accuracy_table(models: dict[str, ZooModel], world: World, preset: str) -> str:
    rows = []
    for name, model in models.items():
        entry = get_entry(name)
        accuracy, seconds = model.metrics["val_accuracy"], model.metrics["wall_time_s"]
        cpu = model.metrics.get("cpu_time_s")
        ok = (accuracy >= MIN_ACCURACY[entry.role] and seconds <= BUDGET_S[entry.role])
        kind = model.config.kind + (" (evaluation)" if entry.role == "evaluator" else "")
        params = parameter_count(entry, preset, world.num_private)
        rows.append([name, kind, f"{params / 1e6:.2f}M",
                     f"{model.config.input_resolution}px", f"{100 * accuracy:.1f}%",
                     f"{seconds:.0f}", "-" if cpu is None else f"{cpu:.0f}",
                     "yes" if ok else "NO"])
    return table(["name", "kind", "params", "resolution", "private-test acc", "train s",
                  "train CPU s", "meets budget"], rows)


def fine_tune_table(models: dict[str, ZooModel], world: World) -> str:
    rows = []
    for base in CHAINS:
        chain = [base, *(f"{base}@ft{r}" for r in range(1, FINE_TUNE_ROUNDS + 1))]
        if not all(name in models for name in chain):
            continue
        for previous, name in zip([None, *chain], chain):
            model = models[name]
            if not isinstance(model.target, OpenSetModel):
                raise TypeError(f"{name} is not an open-set target")
            private_train = world.split("private-train")
            change = ("-" if previous is None
                      else f"{relative_change(models[previous], models[name]):.3f}")
            rows.append([name, change, f"{100 * accuracy(model.target, private_train):.1f}%",
                         f"{gallery_margin(model.target, private_train):.4f}",
                         f"{100 * model.metrics['val_accuracy']:.1f}%"])
    return table(["model", "weight change", "private-train acc", "private-train margin",
                  "private-test acc"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="mini", choices=["smoke", "mini", "paper"])
    parser.add_argument("--names", default="all", help="zoo names or patterns (default: all)")
    parser.add_argument("--cache-dir", help="cache directory (default ~/.cache/mibench)")
    parser.add_argument("--fresh", action="store_true",
                        help="train everything in a temporary cache (the world too)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's); 1 "
                        "is faster when other jobs share the cores")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    scratch = tempfile.TemporaryDirectory() if args.fresh else None
    cache = Cache(scratch.name if scratch else args.cache_dir)
    dataset = DATASETS.get("synth")
    world = dataset.build(dataset.Config.resolve(args.preset), cache, progress=False)
    print(f"preset {args.preset}, world {world.fingerprint}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    started = time.perf_counter()
    names = [n for n in expand_names(args.names)
             if not awaits_import(get_entry(n), cache, args.preset)]
    models = {name: load_entry(get_entry(name), world, cache, args.preset, args.device,
                               progress=False) for name in names}
    print(accuracy_table(models, world, args.preset))
    print("\nTable III sanity (fine-tuning on private-train):")
    print(fine_tune_table(models, world))
    trained = sum(m.source == "trained" for m in models.values())
    print(f"\n{trained} of {len(models)} trained now, {len(models) - trained} loaded; "
          f"{time.perf_counter() - started:.0f} s in all; evaluation models: "
          f"{', '.join(EVALUATORS.names())}")
    if scratch:
        scratch.cleanup()


if __name__ == "__main__":
    main()
