"""Attack-time cost per identity of FGMIA against GMI (or of any attacks), in one run.

    .venv/bin/python benchmarks/attack_speed.py [--preset mini] [--targets arcface,ir152]
        [--attacks fgmia,gmi] [--identities 10] [--samples 16] [--threads 2] [--cache-dir DIR]
        [--fresh-priors]

The paper's efficiency claim (§ Efficiency): FGMIA needs no iterative optimisation — one
sampling pass and a few feature queries per identity — where GMI optimises every sample for
thousands of gradient steps. For each attack and target this trains (or loads) the prior, then
times ``invert`` + ``select`` for the first ``identities`` identities with ``samples`` images
each, and prints seconds and target queries (forward, gradient) per identity and, when both
are measured, the GMI / FGMIA ratios. Prior training is excluded and printed separately (cached priors: ~0;
``--fresh-priors`` trains them anew in a temporary cache that shares the world and targets).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from mibench.attack import Attack
from mibench.cache import Cache
from mibench.cell import attack_setting
from mibench.registry import ATTACKS
from mibench.runconfig import build_world, resolve
from mibench.targets.zoo import expand_names
from mibench.world import World



def measure(attack_name: str, target: str, world: World, cache: Cache, preset: str, identities: int,
            samples: int) -> dict[str, float]:
    cls = ATTACKS.get(attack_name)
    attack: Attack = cls(cls.Config.resolve(preset))
    _, ctx = attack_setting(attack, target, world, cache, preset, torch.device("cpu"),
                            show_progress=False)
    clock = time.perf_counter()
    attack.prepare(ctx)
    prepare_s = time.perf_counter() - clock
    labels = torch.arange(identities).repeat_interleave(samples)
    clock = time.perf_counter()
    with ctx.ledger.scope(labels):
        images = attack.invert(ctx.target, labels, ctx)
        attack.select(ctx.target, images, labels, ctx)
    seconds = time.perf_counter() - clock
    per_id = {kind: sum(ctx.ledger.per_identity(kind).values()) / identities
              for kind in ctx.ledger.KINDS}
    return {"prepare_s": prepare_s, "s_per_id": seconds / identities,
            "forward_per_id": per_id["forward"], "gradient_per_id": per_id["gradient"]}


def fresh_prior_cache(cache: Cache, root: Path) -> Cache:
    """A cache at ``root`` that links to ``cache``'s worlds and targets and has no priors."""
    for component in ("world", "targets"):
        (cache.root / component).mkdir(parents=True, exist_ok=True)
        (root / component).symlink_to((cache.root / component).resolve())
    return Cache(root)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="mini", choices=("smoke", "mini", "paper"))
    parser.add_argument("--targets", default="arcface,ir152")
    parser.add_argument("--attacks", default="fgmia,gmi")
    parser.add_argument("--identities", type=int, default=10)
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--cache-dir", default=None,
                        help="default: $MIBENCH_CACHE or ~/.cache/mibench")
    parser.add_argument("--fresh-priors", action="store_true",
                        help="train the priors anew (world and targets still come from the cache)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cache = Cache(args.cache_dir)
    if args.fresh_priors:
        cache = fresh_prior_cache(cache, Path(tempfile.mkdtemp(prefix="mibench-priors-")))
    tree = resolve(args.preset, flags={"attacks": args.attacks, "targets": args.targets})
    world = build_world(tree, cache, progress=False)
    print(f"preset {args.preset}, {args.identities} identities × {args.samples} samples, "
          f"torch {torch.__version__}, {args.threads} threads, cpu")
    header = ("attack", "target", "prior s", "s / identity", "forward q / id", "grad q / id")
    print(" | ".join(header))
    for target in expand_names(args.targets):
        results = {name: measure(name, target, world, cache, args.preset, args.identities,
                                 args.samples) for name in ATTACKS.expand(args.attacks)}
        for name, r in results.items():
            print(f"{name} | {target} | {r['prepare_s']:.1f} | {r['s_per_id']:.2f} | "
                  f"{r['forward_per_id']:.0f} | {r['gradient_per_id']:.0f}")
        if not {"fgmia", "gmi"} <= set(results):
            continue
        fg, gmi = results["fgmia"], results["gmi"]
        queries = ((gmi["forward_per_id"] + gmi["gradient_per_id"])
                   / max(fg["forward_per_id"] + fg["gradient_per_id"], 1))
        print(f"ratio GMI / FGMIA on {target}: time {gmi['s_per_id'] / fg['s_per_id']:.1f}×, "
              f"queries {queries:.1f}×")


if __name__ == "__main__":
    main()
