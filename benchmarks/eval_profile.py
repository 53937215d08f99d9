"""Seconds per metric of one stored cell's evaluation: the value and its 95 % interval.

    .venv/bin/python benchmarks/eval_profile.py CELL_DIR [--target arcface-18] [--preset mini]
        [--threads 2]

CELL_DIR is a stored cell's image folder (``<results>/<run>/<attack>/<target>/images``, holding
``samples.pt``). The run's preset builds the world, the evaluation models and the private
reference (from the cache), then each default metric is measured on all images and on the
selected ones, and its interval (:mod:`mibench.metrics.bootstrap`) computed, each timed alone.
Issue 23.9: which part of a cell's evaluation costs what.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from mibench.cell import CellSetting
from mibench.metrics import bootstrap
from mibench.metrics.context import EvalContext
from mibench.metrics.evaluate import default_metrics
from mibench.registry import METRICS
from mibench.runconfig import resolve
from mibench.targets.enrolment import enrol
from mibench.targets.zoo import get_entry, load_entry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cell_dir", type=Path)
    parser.add_argument("--target", default="arcface-18")
    parser.add_argument("--preset", default="mini")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    stored = torch.load(args.cell_dir / "samples.pt")
    images = stored["images"].float() / 255
    setting = CellSetting.build(resolve(args.preset, flags={"targets": args.target}),
                                show_progress=False)
    target = load_entry(get_entry(args.target), setting.world, setting.cache, args.preset,
                        setting.device, False).target
    enrol(target, setting.world.split("private-train"), "single", 0)
    every = EvalContext(images, stored["labels"], target=target, private=setting.reference)
    print("| subset | metric | measure (s) | interval (s) |\n|---|---|---:|---:|")
    for subset, ctx in {"all": every, "selected": every.subset(stored["selected"])}.items():
        for name in default_metrics():
            metric = METRICS.get(name)
            clock = time.perf_counter()
            value = metric.measure(ctx)
            measured = time.perf_counter() - clock
            clock = time.perf_counter()
            if value.value is not None:
                bootstrap.interval(metric, ctx, value)
            print(f"| {subset} | {name} | {measured:.2f} | {time.perf_counter() - clock:.2f} |")


if __name__ == "__main__":
    main()
