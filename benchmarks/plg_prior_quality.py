"""Raw-sample quality of PLG-MI's cGAN prior, before any latent optimisation (issue 18.1).

    nice -n 5 .venv/bin/python benchmarks/plg_prior_quality.py [--preset mini] [--target arcface]
        [--set gan_steps=1200 --set n_dis=2 ...] [--checkpoints 300,600] [--identities 10]
        [--samples 16] [--threads 2] [--fid] [--seed 0]

Trains the prior (top-n pseudo-labels + cGAN, ``attacks/plg.py``) for one target into the
cache, as ``mibench run`` would (a cached prior is loaded and measured once), and at every
checkpoint (generator step) draws ``samples`` raw images G(z, y), z ~ N(0, I), for each of the
first ``identities`` private identities, the harness's attacked ones. It prints, per checkpoint,
the training seconds so far (pseudo-labels included, evaluations excluded), the load average,
and the evaluation model's and the target's Acc@1 on those images; with ``--fid`` also, at the
last step, their FID to the identities' private-train images (the suite's metric code, as
``mibench run`` reports them). Use ``--threads 1`` on shared cores.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any, Iterable, Iterator

import torch
from torch import nn

from mibench.access import TargetView
from mibench.attack import AttackContext, set_progress_factory
from mibench.attacks.plg import PLG, PLGConfig, PLGPrior
from mibench.cell import CellSetting, attack_setting
from mibench.config import parse_assignment
from mibench.errors import ConfigError
from mibench.metrics.evaluate import evaluate
from mibench.runconfig import resolve
from mibench.targets.zoo import expand_names

METRICS = ("eval_acc1", "target_acc1")


def raw_samples(generator: nn.Module, identities: int, samples: int, z_dim: int) -> tuple[
        torch.Tensor, torch.Tensor]:
    """``samples`` images G(z, y) in [0, 1] per identity 0..identities − 1 (fixed z seed)."""
    labels = torch.arange(identities).repeat_interleave(samples)
    z = torch.randn(len(labels), z_dim, generator=torch.Generator().manual_seed(1234))
    was_training = generator.training
    generator.eval()
    with torch.no_grad():
        images = (generator(z, labels) + 1) / 2
    generator.train(was_training)
    return images.clamp(0, 1), labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="mini", choices=("smoke", "mini", "paper"))
    parser.add_argument("--target", default="arcface")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="PLGConfig override (repeatable)")
    parser.add_argument("--checkpoints", default="",
                        help="comma-separated generator steps to measure at (always the last)")
    parser.add_argument("--identities", type=int, default=10)
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fid", action="store_true",
                        help="also FID at the last step (slow on CPU)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    overrides = {path[-1]: value for path, value in map(parse_assignment, args.set)}
    config = PLGConfig.resolve(args.preset, overrides)
    names = expand_names(args.target)
    if len(names) != 1:
        raise ConfigError(f"--target names one target, {args.target!r} selects {names}")
    name = names[0]  # the canonical name, part of the prior's cache key as in `mibench run`
    tree = resolve(args.preset, flags={"attacks": "plg", "targets": name})
    setting = CellSetting.build(tree, show_progress=False)
    attack = PLG(config)
    target, ctx = attack_setting(attack, name, setting.world, setting.cache, args.preset,
                                 setting.device, seed=args.seed, show_progress=False)
    if args.identities > target.num_classes:
        raise ConfigError(f"--identities {args.identities}: {name} has only "
                          f"{target.num_classes} identities")
    trained: dict[str, nn.Module] = {}
    checkpoints = {int(s) for s in args.checkpoints.split(",") if s} | {config.gan_steps}
    final = METRICS + (("fid",) if args.fid else ())
    print(f"PLG-MI prior on {name}, preset {args.preset}, {args.threads} threads; "
          f"overrides {overrides or '{}'}")
    print("step | train s | load | " + " | ".join(final))
    clock = {"start": time.perf_counter(), "paused": 0.0}

    def report(step: int, metrics: tuple[str, ...] = METRICS) -> None:
        paused = time.perf_counter()
        seconds = paused - clock["start"] - clock["paused"]
        images, labels = raw_samples(trained["generator"], args.identities, args.samples,
                                     config.z_dim)
        values = {v.name: v.value for v in evaluate(images, labels, target=target,
                                                    private=setting.reference, metrics=metrics)}
        shown = " | ".join(f"{values[m]:.3f}" if values[m] is not None else "-" for m in metrics)
        print(f"{step} | {seconds:.0f} | {os.getloadavg()[0]:.2f} | {shown}", flush=True)
        clock["paused"] += time.perf_counter() - paused

    def bar(iterable: Iterable[Any], desc: str = "", **_: Any) -> Iterator[Any]:
        for step in iterable:
            yield step
            if desc == "PLG-MI cGAN" and step + 1 in checkpoints and step + 1 < config.gan_steps:
                report(step + 1)

    def train(module: PLGPrior, view: TargetView, context: AttackContext) -> None:
        trained["generator"] = module.generator
        train_prior(module, view, context)

    train_prior, attack.train_prior = attack.train_prior, train  # type: ignore[method-assign]
    set_progress_factory(lambda iterable, **kwargs: _Bar(bar(iterable, **kwargs)))
    clock["start"] = time.perf_counter()
    torch.manual_seed(ctx.seed)  # as the harness's seeded_prepare
    attack.prepare(ctx)
    set_progress_factory(None)
    if "generator" not in trained:
        print("(prior loaded from the cache: not retrained)")
    trained["generator"] = attack.generator
    report(config.gan_steps, final)


class _Bar:
    """An iterator with tqdm's ``set_postfix`` (ignored), as ``show_losses`` calls it."""

    def __init__(self, steps: Iterator[Any]) -> None:
        self.steps = steps

    def __iter__(self) -> Iterator[Any]:
        return self.steps

    def set_postfix(self, *_: Any, **__: Any) -> None:
        """No display."""


if __name__ == "__main__":
    main()
