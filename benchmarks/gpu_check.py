"""The GPU check, for when a GPU is lent: environment, test suite and a short run of every attack.

    .venv/bin/python benchmarks/gpu_check.py --out DIR [--device auto] [--tests]
        [--attacks all] [--budget-s 480] [--precision auto]
    .venv/bin/python benchmarks/gpu_check.py --out DIR --device cpu --tiny   # the CPU rehearsal
    .venv/bin/python benchmarks/gpu_check.py --out DIR --dry                 # environment only

Issue 17, Build 7. One command, under 10 minutes on one GPU; writes ``DIR/gpu_check.json`` and
``DIR/gpu_check.md`` (the markdown tables, also printed) and exits 1 if anything failed.

1. *Environment*: torch and CUDA versions, GPU name and memory, bf16 support and the precision
   the run's policy resolves to on the device (:func:`mibench.precision.resolve`).
2. *Test suite* (``--tests``): ``pytest -q`` of every test, slow ones included (``make
   test-all``) on the machine; the CUDA-only tests run where CUDA is there.
3. *Attacks*: every registered attack, in this process one after the other: ``prepare``, then
   ``invert`` of :data:`IDENTITIES` × :data:`SAMPLES` images (:func:`attack_setting`:
   ``paper_shapes.py``'s paper-sized networks with cut step counts against an untrained zoo
   target; ``--tiny``: the ``smoke`` preset). Per attack: seconds (of ``invert``: its counted
   first step included, so images/s is a lower bound), invert images/s, achieved TFLOP/s of
   prepare and invert (``step_meter.py``: FLOPs of a loop's first step, counted by
   ``torch.utils.flop_counter.FlopCounterMode``, over the time of its other steps; an invert
   without a timed loop step is counted whole in a second run), peak memory (CUDA:
   ``torch.cuda.max_memory_allocated``; CPU: the process's peak RSS) and whether autocast was
   active (the output dtypes of the linear and convolution layers, seen by a forward hook).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch

from mibench import precision
from mibench.access import QueryLedger, view_for
from mibench.attack import Attack, AttackContext
from mibench.cache import Cache
from mibench.datasets.synth.config import WorldConfig
from mibench.harness import source_commit
from mibench.registry import ATTACKS
from mibench.targets.models import build_target
from mibench.targets.zoo import get_entry, resolve_device
from mibench.world import Split

sys.path.insert(0, str(Path(__file__).resolve().parent))
from shape_checks import (IDENTITIES, PAPER_WORLD, PLANS, SAMPLES, SEED, Plan,  # noqa: E402
                          aux_split, paper_target, peak_memory_gib)
from step_meter import (MeteredContext, StepFlops, achieved_tflops,  # noqa: E402
                        matmul_dtypes, now)

GIB = 2 ** 30
SMOKE_AUX_IMAGES = 48
TARGET = "evolve"   # closed-set with a linear head, so that every attack's paths run
REPO = Path(__file__).resolve().parent.parent
ATTACK_COLUMNS = ("attack", "status", "prepare s", "prepare TFLOP/s", "invert s",
                  "invert images/s", "invert TFLOP/s", "peak GiB", "autocast", "matmul dtypes")


def environment(device: torch.device, policy: str) -> dict[str, Any]:
    """Versions, the device and what the precision ``policy`` means on it."""
    facts: dict[str, Any] = {
        "commit": source_commit(), "python": platform.python_version(),
        "torch": torch.__version__, "cuda": torch.version.cuda, "device": str(device),
        "cuda_available": torch.cuda.is_available(), "cpu_threads": torch.get_num_threads(),
        "precision_policy": policy, "precision": precision.resolve(policy, device).name}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        facts.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / GIB, 1),
                     capability=f"{props.major}.{props.minor}",
                     bf16_supported=torch.cuda.is_bf16_supported())
    return facts


def run_test_suite(timeout_s: float) -> dict[str, Any]:
    """``pytest -q`` of every test (slow ones too); its last line, exit code and seconds."""
    start = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                              cwd=REPO, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"status": "FAILED", "summary": f"timed out after {timeout_s:.0f} s",
                "seconds": time.perf_counter() - start}
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    return {"status": "ok" if done.returncode == 0 else "FAILED", "returncode": done.returncode,
            "summary": lines[-1] if lines else done.stderr.strip()[-300:],
            "seconds": time.perf_counter() - start}


def smoke_aux(resolution: int) -> Split:
    """:data:`SMOKE_AUX_IMAGES` uint8 noise images, 4 per identity."""
    gen = torch.Generator().manual_seed(SEED)
    images = torch.randint(0, 256, (SMOKE_AUX_IMAGES, 3, resolution, resolution),
                           dtype=torch.uint8, generator=gen)
    identities = torch.arange(SMOKE_AUX_IMAGES) // 4
    return Split("aux", images, identities, identities.clone())


def attack_setting(name: str, device: torch.device, preset: str, cache_root: Path,
                   context: type[MeteredContext]) -> tuple[Attack, MeteredContext, torch.Tensor]:
    """The attack ``name``, the context of its short run and the labels to invert. ``paper``:
    the setting of ``paper_shapes.py`` (``shape_checks.py``: the paper config with its
    ``PLANS`` cuts of step counts and batch sizes, an untrained :data:`TARGET` of 1,000 classes,
    36 random 112 px aux images); ``smoke``: the smoke config against an untrained smoke-size
    :data:`TARGET`, random aux images at the smoke world's resolution."""
    cls = ATTACKS.get(name)
    if preset == "paper":
        plan = PLANS.get(name, Plan())
        attack: Attack = cls(cls.Config.resolve("paper", plan.overrides))
        target = paper_target(TARGET, plan.classes or PAPER_WORLD.private_identities, device)
        aux = aux_split()
    else:
        attack = cls(cls.Config.resolve(preset))
        world = WorldConfig.resolve(preset)
        target = build_target(get_entry(TARGET).resolve(preset), world.private_identities)
        aux = smoke_aux(world.resolution)
    ledger = QueryLedger()
    ctx = context(aux=aux, cache=Cache(cache_root), device=device, seed=SEED, ledger=ledger,
                  target=view_for(attack.spec.access, target.to(device).eval(), ledger),
                  preset=preset, data_fingerprint=f"gpu-check:{name}",
                  aux_fingerprint="gpu-check", show_progress=False)
    return attack, ctx, torch.arange(IDENTITIES).repeat_interleave(SAMPLES)


def run_attack(name: str, device: torch.device, preset: str, cache_root: Path) -> dict[str, Any]:
    """One attack's short run (:func:`attack_setting`); an error becomes its FAILED row."""
    row: dict[str, Any] = {"attack": name, "preset": preset, "status": "ok", "phase": "setup"}
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    ctx: MeteredContext | None = None
    try:
        attack, ctx, labels = attack_setting(name, device, preset, cache_root / name,
                                             MeteredContext)
        with matmul_dtypes(device) as dtypes:
            torch.manual_seed(ctx.seed)
            row["phase"] = "prepare"
            start = now(device)
            attack.prepare(ctx)
            row["prepare_s"] = now(device) - start
            prepare_loops = ctx.take_loops()
            row["prepare_tflops"] = achieved_tflops(prepare_loops)
            row["phase"] = "invert"
            torch.manual_seed(ctx.seed)
            start = now(device)
            with ctx.ledger.scope(labels):
                images = attack.invert(ctx.target, labels.to(device), ctx)
            row["invert_s"] = now(device) - start
            invert_loops = ctx.take_loops()
        row["invert_tflops"] = achieved_tflops(invert_loops)
        if not math.isfinite(row["invert_tflops"]):  # no loop, or no step after the counted
            row["invert_tflops"] = counted_invert(attack, ctx, labels) / row["invert_s"] / 1e12
        row["invert_images_per_s"] = len(labels) / row["invert_s"]
        row["output"] = list(images.shape)
        row["loops"] = {f"{phase}: {desc}": {"gflop_per_step": (m.step_flops or 0) / 1e9,
                                             "timed_steps": len(m.seconds),
                                             "s_per_step": (sum(m.seconds) / len(m.seconds)
                                                            if m.seconds else None)}
                        for phase, loops in (("prepare", prepare_loops),
                                             ("invert", invert_loops))
                        for desc, m in loops.items()}
        row["matmul_dtypes"] = dict(dtypes)
        row["autocast"] = any("(autocast)" in key for key in dtypes)
        del row["phase"]
    except Exception as err:  # the row's result: reported, never hidden
        row.update(status="FAILED", error=f"{type(err).__name__}: {err}".splitlines()[0],
                   traceback=traceback.format_exc())
        print(row["traceback"], file=sys.stderr)
    finally:
        if ctx is not None:
            ctx.close_loops()
    row["peak_gib"] = peak_memory_gib(device)
    return row


def counted_invert(attack: Attack, ctx: AttackContext, labels: torch.Tensor) -> float:
    """FLOPs of a whole second ``invert`` (for inverts without a progress loop)."""
    torch.manual_seed(ctx.seed)
    with StepFlops() as counter, ctx.ledger.scope(labels):
        attack.invert(ctx.target, labels.to(ctx.device), ctx)
    return float(counter.get_total_flops())


def _num(value: Any, spec: str = ".2f") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return format(value, spec)


def _attack_cells(row: dict[str, Any]) -> list[str]:
    status = "ok" if row["status"] == "ok" else (
        f"{row['status']} ({row.get('phase', '?')}): {row.get('error', '')}"[:160])
    dtypes = ", ".join(f"{k} ×{v}" for k, v in (row.get("matmul_dtypes") or {}).items())
    autocast = "—" if row.get("autocast") is None else ("yes" if row["autocast"] else "no")
    return [row["attack"], status, _num(row.get("prepare_s"), ".1f"),
            _num(row.get("prepare_tflops"), ".3g"), _num(row.get("invert_s"), ".2f"),
            _num(row.get("invert_images_per_s"), ".3g"), _num(row.get("invert_tflops"), ".3g"),
            _num(row.get("peak_gib")), autocast, dtypes or "—"]


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = [list(header), ["---"] * len(header), *rows]
    return "\n".join("| " + " | ".join(cell.replace("|", "/") for cell in line) + " |"
                     for line in lines)


def markdown(report: dict[str, Any]) -> str:
    """The environment, the test suite's result and the attack table, in markdown."""
    env = report["environment"]
    parts = ["### GPU check", _table(("fact", "value"), ([k, str(v)] for k, v in env.items()))]
    if report.get("tests"):
        tests = report["tests"]
        parts.append(f"Test suite: {tests['status']}, {tests['summary']} "
                     f"({tests['seconds']:.0f} s)")
    if report.get("attacks"):
        parts.append(_table(ATTACK_COLUMNS, map(_attack_cells, report["attacks"])))
    skipped = report.get("skipped") or []
    if skipped:
        parts.append(f"Skipped (time budget spent): {', '.join(skipped)}")
    return "\n\n".join(parts) + "\n"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for gpu_check.json and .md")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--precision", default="auto", choices=precision.POLICIES)
    parser.add_argument("--attacks", default="all", help="comma list or 'all' (registry)")
    parser.add_argument("--tiny", action="store_true", help="smoke sizes (the CPU rehearsal)")
    parser.add_argument("--dry", action="store_true", help="the environment only")
    parser.add_argument("--tests", action="store_true", help="run the whole test suite first")
    parser.add_argument("--tests-timeout-s", type=float, default=300.0)
    parser.add_argument("--budget-s", type=float, default=480.0, help="start no attack after "
                        "this many seconds of the check (the rest are listed as skipped)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    device = resolve_device(args.device)
    precision.configure(args.precision, device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"environment": environment(device, args.precision),
                              "tests": None, "attacks": [], "skipped": []}
    print(f"GPU check on {device}: precision {report['environment']['precision']}", flush=True)

    def write() -> None:
        (out / "gpu_check.json").write_text(json.dumps(report, indent=1, default=str))
        (out / "gpu_check.md").write_text(markdown(report))

    if args.tests and not args.dry:
        report["tests"] = run_test_suite(args.tests_timeout_s)
        print(f"tests: {report['tests']['summary']}", flush=True)
        write()
    names = [] if args.dry else ATTACKS.expand(args.attacks)
    for name in names:
        if time.perf_counter() - started > args.budget_s:
            report["skipped"].append(name)
            continue
        row = run_attack(name, device, "smoke" if args.tiny else "paper", out / "cache")
        report["attacks"].append(row)
        print(f"{name}: {_attack_cells(row)[1]}", flush=True)
        write()
    report["seconds"] = time.perf_counter() - started
    write()
    print(markdown(report))
    failed = [r["attack"] for r in report["attacks"] if r["status"] != "ok"]
    if report["tests"] and report["tests"]["status"] != "ok":
        failed.append("tests")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
