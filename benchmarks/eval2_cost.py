"""Seconds the second evaluator and the verification view add to one cell's evaluation.

    .venv/bin/python benchmarks/eval2_cost.py [--preset smoke] [--target arcface-18]

Builds the run setting of the preset (world, both evaluation models, private reference; from
the cache when there), the target, and random images for the preset's identities × samples,
then times what a cell does after ``invert`` (every default metric on ``all`` and ``selected``
with its 95 % interval, as ``mibench.cell.compute_cell``) with and without ``eval2_acc1/5``,
``transfer_gap`` and ``sar_far1e-3``; the median of ``--repeats`` fresh contexts each.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from mibench.cell import CellSetting
from mibench.metrics import bootstrap
from mibench.metrics.context import EvalContext
from mibench.metrics.evaluate import default_metrics, measure
from mibench.registry import METRICS
from mibench.runconfig import resolve
from mibench.targets.enrolment import enrol
from mibench.targets.zoo import get_entry, load_entry

NEW = ("eval2_acc1", "eval2_acc5", "transfer_gap", "sar_far1e-3")


def evaluation_seconds(setting: CellSetting, target: torch.nn.Module, images: torch.Tensor,
                       labels: torch.Tensor, names: list[str]) -> float:
    clock = time.perf_counter()
    every = EvalContext(images, labels, target=target, private=setting.reference)
    for ctx in (every, every.subset(torch.arange(0, len(labels), max(1, len(labels) // 10)))):
        for value in measure(ctx, names):
            if value.value is not None:
                bootstrap.interval(METRICS.get(value.name), ctx, value)
    return time.perf_counter() - clock


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="smoke", choices=["smoke", "mini"])
    parser.add_argument("--target", default="arcface-18")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    tree = resolve(args.preset, flags={"targets": args.target, "device": "cpu"},
                   with_attacks=False)
    setting = CellSetting.build(tree, show_progress=False)
    target = load_entry(get_entry(args.target), setting.world, setting.cache, args.preset,
                        setting.device, False).target
    enrol(target, setting.world.split("private-train"), tree["run"]["enrolment"],
          tree["run"]["seed"])
    run = tree["run"]
    labels = torch.arange(run["identities"]).repeat_interleave(run["samples"])
    side = setting.world.split("private-train").float_images(torch.arange(1)).shape[-1]
    images = torch.rand(len(labels), 3, side, side, generator=torch.Generator().manual_seed(0))
    every = default_metrics()
    without = [n for n in every if n not in NEW]
    evaluation_seconds(setting, target, images, labels, every)  # warm: reference features
    times = {label: statistics.median(evaluation_seconds(setting, target, images, labels, names)
                                      for _ in range(args.repeats))
             for label, names in (("without", without), ("with", every))}
    values = {v.name: v.value if v.value is not None else v.reason
              for v in measure(EvalContext(images, labels, target=target,
                                           private=setting.reference), list(NEW))}
    print(f"preset {args.preset}, target {args.target}, {len(labels)} images, "
          f"{torch.get_num_threads()} threads")
    print(f"evaluation s per cell: without {times['without']:.3f}, with {times['with']:.3f}, "
          f"extra {times['with'] - times['without']:.3f}")
    print(f"new metrics on random images: {values}")


if __name__ == "__main__":
    main()
