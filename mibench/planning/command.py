"""``mibench plan`` (for now ``python -m mibench.planning``): print the resource plan.

Budget: every row shows its estimated peak GPU memory and whether it fits the budget
(``--budget-gib``, default the GPU's memory). Rows over it are marked ``OVER``; with an explicit
``--budget-gib`` the command then exits with status 3, so a script can gate on it.
"""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING, Any

from mibench.config import PRESETS
from mibench.planning.count import CALIBRATION
from mibench.planning.gpus import (DEFAULT_GPU, DEFAULT_UTILISATION, GPUS, POLICY_RATES,
                                   get_gpu)
from mibench.runconfig import resolve

if TYPE_CHECKING:  # the planner builds every network on meta: imported when a plan runs
    from mibench.planning.plan import Plan, Row

OVER_BUDGET_STATUS = 3
GIB = 2 ** 30
SECTIONS = (("prior", "Priors (shared ones once, target-dependent ones once per target)"),
            ("target", "Targets and evaluation model (training)"),
            ("cell", "Cells: attack runs (prior and target training excluded)"))


def add_plan_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``plan`` on a subparsers object (also used standalone by ``__main__``)."""
    parser = subparsers.add_parser(
        "plan", help="estimate GPU-hours and peak GPU memory of a run (no world is built)",
        description=__doc__)
    add_plan_arguments(parser)
    parser.set_defaults(func=cmd_plan)
    return parser


def add_plan_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--experiment", help="a named plan (table1 … table6, efficiency)")
    parser.add_argument("--attacks", help="attacks, when no --experiment")
    parser.add_argument("--targets", help="targets, when no --experiment")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="paper")
    parser.add_argument("--config", help="YAML config file, as for `mibench run`")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, as for `mibench run`")
    parser.add_argument("--gpu", default=DEFAULT_GPU, choices=sorted(GPUS))
    parser.add_argument("--precision", choices=POLICY_RATES,
                        help="throughput used for the hours; default the run's run.precision "
                             "(auto: the loops autocast, bf16 tensor-core rate); fp32 for no "
                             "autocast; memory is always counted in fp32")
    parser.add_argument("--utilisation", type=float, default=DEFAULT_UTILISATION,
                        help="share of the GPU's peak throughput reached (ours: 0.3)")
    parser.add_argument("--budget-gib", type=float,
                        help=f"memory budget; rows over it are marked and the exit status is "
                             f"{OVER_BUDGET_STATUS}")


def cmd_plan(args: argparse.Namespace) -> int:
    from mibench.planning.plan import build_plan

    started = time.perf_counter()
    flags = {"experiment": args.experiment, "attacks": args.attacks, "targets": args.targets}
    tree = resolve(args.preset, args.config, args.set, flags=flags)
    plan = build_plan(tree)
    gpu = get_gpu(args.gpu)
    budget = gpu.memory_gib if args.budget_gib is None else args.budget_gib
    policy = throughput_policy(args.precision, tree)
    rate = gpu.tflops(policy) * 1e12 * args.utilisation
    print(f"Plan: {tree['run'].get('experiment') or 'run'} at preset {plan.preset}, "
          f"{tree['run']['identities']} identities × {tree['run']['samples']} samples, on "
          f"{gpu.title} at {gpu.tflops(policy):g} {POLICY_RATES[policy]} TFLOP/s "
          f"(precision {policy}) × "
          f"{args.utilisation:g}; budget {budget:g} GiB; activations × {CALIBRATION:g} "
          "(CPU calibration)")
    for section, title in SECTIONS:
        print(f"\n{title}\n{_table(plan.section(section), rate, budget)}")
    print(f"\n{_recipes(plan)}")
    over = [r for r in plan.rows if r.peak_bytes / GIB > budget]
    missing = [r.name for r in plan.rows if r.flops is None]
    print(f"\nTotal: {plan.total_flops / 1e18:.2f} EFLOP = {_hours(plan.total_flops, rate):.0f} "
          f"GPU-hours on one {gpu.name}; {len(over)} row(s) over {budget:g} GiB"
          + (f"; no estimate for {', '.join(missing)}" if missing else "")
          + f" (planned in {time.perf_counter() - started:.1f} s)")
    return OVER_BUDGET_STATUS if over and args.budget_gib is not None else 0


def throughput_policy(requested: str | None, tree: dict[str, Any]) -> str:
    """The precision whose throughput the hours use: ``--precision``, else the run's
    ``run.precision`` (``auto``: the loops autocast on a CUDA GPU, the bf16 rate)."""
    return requested or tree["run"].get("precision", "auto")


def _hours(flops: float, rate: float) -> float:
    return flops / rate / 3600


def _table(rows: list[Row], rate: float, budget: float) -> str:
    header = ("name", "steps", "PFLOP", "GPU-h", "peak GiB", "fits", "note")
    lines = [header]
    for r in rows:
        if r.flops is None:
            lines.append((r.name, "", "", "", "", "?", r.note))
            continue
        fits = "yes" if r.peak_bytes / GIB <= budget else "OVER"
        lines.append((r.name, f"{r.steps:,.0f}" if r.steps else "", f"{r.flops / 1e15:,.1f}",
                      f"{_hours(r.flops, rate):,.1f}", f"{r.peak_bytes / GIB:,.1f}", fits,
                      r.note))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip()
                     for line in lines)


def _recipes(plan: Plan) -> str:
    lines = ["Target recipes (SGD, cosine lr): name  arch-depth  width  loss  epochs  batch  lr"]
    for name, cfg in plan.recipes.items():
        depth = "" if cfg.arch == "inception_resnet" else f"-{cfg.depth}"
        lines.append(f"  {name:18s} {cfg.arch + depth:17s} {cfg.width:g}  {cfg.loss:8s} "
                     f"{cfg.epochs:3d}  {cfg.batch_size:4d}  {cfg.lr:g}  "
                     f"(momentum {cfg.momentum:g}, wd {cfg.weight_decay:g}, "
                     f"{cfg.resolution} px, {cfg.kind}-set)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mibench.planning", description=__doc__)
    add_plan_arguments(parser)
    return cmd_plan(parser.parse_args(argv))
