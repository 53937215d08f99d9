"""Seconds per metric for one cell's image set, and LPIPS by embedding vs by pairs.

    .venv/bin/python benchmarks/metric_speed.py [--preset mini] [--samples runs/<run>/<attack>/<target>/images/samples.pt]
        [--target ir152] [--threads 2] [--cache-dir DIR] [--pairwise]

Evaluates ``samples.pt`` (default: 16 aux images for each of the first 10 private identities,
standing in for generated ones) with every default metric, twice: the first pass also embeds
the private reference (once per run in the harness), the second is what every further cell
costs. ``--pairwise`` also times ST-LPIPS the way it was computed before (one trunk pass per
(generated, private) pair, the package's own forward) and prints both values.
"""

from __future__ import annotations

import argparse
import time

import torch

from mibench.cache import Cache
from mibench.metrics.attribute_reference import AttributeReference
from mibench.metrics.context import EvalContext
from mibench.metrics.evaluate import default_metrics
from mibench.metrics.perceptual import load_st_lpips, nearest_perceptual_distance
from mibench.metrics.reference import PrivateReference
from mibench.registry import METRICS
from mibench.runconfig import build_world, resolve
from mibench.targets.zoo import get_entry, load_entry, load_evaluator


def pairwise_st_lpips(ctx: EvalContext) -> float:
    """The pre-embedding computation: the package's forward on every (generated, private) pair."""
    net, total = load_st_lpips(ctx.device), 0.0
    for label, index in ctx.by_identity():
        private = ctx.private.images_of(label)
        size = private.shape[-2:]
        for image in ctx.generated[index]:
            image = torch.nn.functional.interpolate(image[None], size=size, mode="bilinear",
                                                    align_corners=False, antialias=True)
            with torch.no_grad():
                distances = net(image.clamp(0, 1).expand(len(private), -1, -1, -1), private,
                                normalize=True)
            total += distances.min().item()
    return total / len(ctx.labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="mini")
    parser.add_argument("--samples", help="a cell's samples.pt (default: aux images)")
    parser.add_argument("--target", default="ir152")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache-dir")
    parser.add_argument("--pairwise", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tree = resolve(args.preset, flags={"cache_dir": args.cache_dir})
    cache = Cache(tree["run"]["cache_dir"] or None)
    world = build_world(tree, cache, progress=False)
    evaluator = load_evaluator(world, cache, args.preset, "cpu", progress=False)
    target = load_entry(get_entry(args.target), world, cache, args.preset, "cpu", False).target
    if args.samples:
        data = torch.load(args.samples, weights_only=True)
        images, labels = data["images"].float() / 255, data["labels"]
    else:
        aux = world.aux("similar")
        images = aux.float_images(torch.arange(160))
        labels = torch.arange(10).repeat_interleave(16)
    reference = PrivateReference(world.split("private-train"), evaluator,
                                 attributes=AttributeReference.of_world(world, cache, args.preset,
                                                                        torch.device("cpu")))
    print(f"{len(images)} images, {len(labels.unique())} identities, "
          f"{torch.get_num_threads()} threads")
    for name in ("first pass", "second pass"):
        ctx = EvalContext(images, labels, target=target, private=reference)
        timings = {}
        for metric in default_metrics():
            clock = time.perf_counter()
            METRICS.get(metric).measure(ctx)
            timings[metric] = time.perf_counter() - clock
        print(f"{name}: {sum(timings.values()):.1f} s  " +
              "  ".join(f"{k} {v:.1f}" for k, v in timings.items()))
    if args.pairwise:
        ctx = EvalContext(images, labels, target=target, private=reference)
        clock = time.perf_counter()
        value = pairwise_st_lpips(ctx)
        pairwise_s = time.perf_counter() - clock
        clock = time.perf_counter()
        embedded = nearest_perceptual_distance(ctx, load_st_lpips(ctx.device), "st_lpips-bench")
        print(f"st_lpips by pairs {pairwise_s:.1f} s ({value:.6f}); by embedding "
              f"{time.perf_counter() - clock:.1f} s ({embedded:.6f})")


if __name__ == "__main__":
    main()
