"""Train the attribute regressor of a preset once and print its time, ceiling and chance.

Trains into a temporary cache (the world comes from ``--cache-dir``, built there if missing) and
prints the training wall time, then ``attr_err``/``attr_acc`` of the private-test images of all
private identities (ceiling) and of other identities' (chance), per attribute, best first;
then the seconds both metrics and their intervals add to a cell of the preset's run shape (its
identities × samples, aux images standing in for generated ones, all and selected sets).

    nice .venv/bin/python benchmarks/attribute_regressor.py [--preset mini] [--cache-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from mibench.cache import Cache
from mibench.datasets.synth import WorldConfig, build_world
from mibench.metrics import EvalContext, PrivateReference, measure
from mibench.metrics.attribute_reference import CONTINUOUS_NAMES, DISCRETE_NAMES, AttributeReference
from mibench.metrics.bootstrap import interval
from mibench.registry import METRICS
from mibench.runconfig import RunConfig
from mibench.testing import ColourTarget
from mibench.world import World


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="mini")
    parser.add_argument("--cache-dir", default=None)
    args = parser.parse_args()
    world = build_world(WorldConfig.resolve(args.preset), Cache(args.cache_dir), progress=False)
    with tempfile.TemporaryDirectory() as tmp:
        clock = time.perf_counter()
        ref = AttributeReference.of_world(world, Cache(tmp), args.preset, torch.device("cpu"))
        seconds = time.perf_counter() - clock
        info = json.loads(next(Path(tmp).glob("attribute-regressor/*/info.json")).read_text())
    assert ref is not None
    print(f"{args.preset}: trained in {seconds:.0f} s ({info['steps']:.0f} steps, final loss "
          f"{info['final_loss']:.3f})")
    refs = ref.references
    for kind, names in (("err", CONTINUOUS_NAMES), ("acc", DISCRETE_NAMES)):
        ceiling, chance = refs[f"{kind}_ceiling"].mean(0), refs[f"{kind}_chance"].mean(0)
        print(f"attr_{kind}: ceiling {ceiling.mean():.3f}, chance {chance.mean():.3f}")
        ratio = ceiling / chance
        for j in ratio.argsort(descending=kind == "acc").tolist():
            print(f"  {names[j]:<15} ceiling {ceiling[j]:.3f}  chance {chance[j]:.3f}  "
                  f"ratio {ratio[j]:.2f}")


    print(f"per cell: {cell_seconds(world, ref, args.preset):.2f} s")


def cell_seconds(world: World, ref: AttributeReference, preset: str) -> float:
    """Seconds of ``attr_err`` and ``attr_acc`` with intervals on a cell's two image sets (the
    references already computed, as for every cell after a run's first)."""
    run = RunConfig.resolve(preset)
    identities = min(run.identities, world.num_private)
    aux = world.aux("similar")
    images = aux.float_images(torch.arange(identities * run.samples) % len(aux))
    labels = torch.arange(identities).repeat_interleave(run.samples)
    private = PrivateReference(world.split("private-train"), ColourTarget(), attributes=ref)
    clock = time.perf_counter()
    every = EvalContext(images, labels, target=ColourTarget(), private=private)
    for ctx in (every, every.subset(torch.arange(0, len(labels), run.samples))):
        for value in measure(ctx, ["attr_err", "attr_acc"]):
            interval(METRICS.get(value.name), ctx, value)
    return time.perf_counter() - clock


if __name__ == "__main__":
    main()
