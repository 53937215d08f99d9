"""Renderer throughput (images/s at 32, 64 and 112 px) and the build time of the mini world.

    .venv/bin/python benchmarks/world_speed.py [--images 512] [--skip-build]

The mini world must build in <= 60 s on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from mibench.cache import Cache
from mibench.datasets.synth import WorldConfig, build_world
from mibench.datasets.synth.face import face_params
from mibench.datasets.synth.identity import sample_identities
from mibench.datasets.synth.nuisance import sample_nuisances
from mibench.datasets.synth.renderer import render_chunks


def images_per_second(resolution: int, supersample: int, count: int) -> float:
    """Throughput of rendering ``count`` celeba-style images in batches, as the builder does."""
    generator = torch.Generator().manual_seed(0)
    attributes = sample_identities(count, "celeba", generator)
    params = face_params(attributes, sample_nuisances(attributes, "celeba", generator))
    started = time.perf_counter()
    for _ in render_chunks(params, resolution, supersample):
        pass
    return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=512, help="images per measurement")
    parser.add_argument("--skip-build", action="store_true", help="skip the mini world build")
    args = parser.parse_args()
    print(f"{torch.get_num_threads()} threads, torch {torch.__version__}")
    for resolution in (32, 64, 112):
        for supersample in (1, 2):
            rate = images_per_second(resolution, supersample, args.images)
            print(f"render {resolution:>3} px, supersample {supersample}: {rate:7.0f} images/s")
    if not args.skip_build:
        config = WorldConfig.resolve("mini")
        with tempfile.TemporaryDirectory() as scratch:
            started = time.perf_counter()
            build_world(config, Cache(scratch), progress=False)
            elapsed = time.perf_counter() - started
        print(f"mini world build: {elapsed:.1f} s for {config.num_images()} images "
              f"({config.resolution} px, supersample {config.supersample}; budget 60 s)")


if __name__ == "__main__":
    main()
