"""Paper shapes without a GPU: every attack and zoo model at ``paper`` sizes, a step or two each.

    .venv/bin/python benchmarks/paper_shapes.py [--only attack:gmi,target:ir152]
        [--mem-gib 12] [--timeout 1200] [--threads N] [--device auto] [--attack-target evolve]
        [--plugin FILE ...] [--json PATH]

Issue 17, Build 6. Every registered attack (ablations and ``--plugin`` attacks included) and
every zoo model (targets and evaluation models) runs in its own subprocess
(``paper_shapes.py --one attack:gmi``) under a hard address-space cap (``RLIMIT_AS``,
``--mem-gib``; about 4 GiB of it is torch's address space at import) and a timeout, so a huge
allocation fails that row with a one-line reason instead of taking the machine down. What each
check does is in ``shape_checks.py``; the per-attack step cuts are its ``PLANS`` table.

Per row: status, weights of the main networks (millions), peak memory (CPU: the subprocess's
peak RSS; CUDA: ``torch.cuda.max_memory_allocated``, and no address-space cap, which CUDA's
mappings would break), seconds of ``prepare`` / ``invert`` and per step. A step is one
optimiser step of the phase's loops (those an attack reports progress on) for all 4 samples;
an invert with no such loop (Diff-MI, UAMI) is timed whole, divided by its planned steps.
Prints markdown tables; exits 1 if any row failed ("FAILED (<phase>): <reason>"; the JSON row
holds the traceback).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Sequence

import torch

from mibench.harness import source_commit
from mibench.registry import ATTACKS, load_plugin_file
from mibench.targets.zoo import expand_names, resolve_device

sys.path.insert(0, str(Path(__file__).resolve().parent))
from shape_checks import check_attack, check_target, peak_memory_gib  # noqa: E402

GIB = 2 ** 30
ATTACK_COLUMNS = ("attack", "status", "networks (M weights)", "peak GiB", "prepare s",
                  "s / prepare step", "invert s", "s / invert step", "output")
TARGET_COLUMNS = ("model", "status", "params (M)", "peak GiB", "s / SGD step (batch 4)",
                  "s / forward (batch 4)", "output")


def components() -> list[str]:
    """Every registered attack, then every zoo target and evaluation model."""
    return ([f"attack:{name}" for name in ATTACKS.names()]
            + [f"target:{name}" for name in expand_names("all")])


def cap_memory(gib: float) -> None:
    """Cap this process's address space at ``gib`` GiB (allocations beyond it fail)."""
    limit = int(gib * GIB)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def run_one(component: str, device: torch.device, attack_target: str,
            cache_dir: Path) -> dict[str, Any]:
    """Check ``component`` in this process; a raised error becomes a FAILED row."""
    kind, _, name = component.partition(":")
    row: dict[str, Any] = {"component": component, "device": str(device), "status": "ok"}
    try:
        if kind == "attack":
            check_attack(name, attack_target, device, cache_dir, row)
        elif kind == "target":
            check_target(name, device, row)
        else:
            raise ValueError(f"component {component!r}: expected attack:NAME or target:NAME")
    except Exception as err:  # any crash is the row's result: reported, never hidden
        row["traceback"] = traceback.format_exc()
        print(row["traceback"], file=sys.stderr)
        row["status"] = "FAILED"
        row["error"] = one_line(f"{type(err).__name__}: {err}")
    row["peak_gib"] = peak_memory_gib(device)
    return row


def one_line(text: str, limit: int = 160) -> str:
    """``text`` on one line, without torch's ``[enforce fail at file:line] check.`` prefix."""
    line = re.sub(r"\[enforce fail at [^\]]*\] [^.]*\. ", "", " ".join(text.split()))
    return line if len(line) <= limit else line[:limit - 1] + "…"


def exit_reason(returncode: int, stderr: str) -> str:
    """Why a subprocess ended without a row: its signal or exit code and last stderr line."""
    if returncode < 0:
        how = f"killed by {signal.Signals(-returncode).name}"
    else:
        how = f"exit code {returncode}"
    lines = [line for line in stderr.splitlines() if line.strip()]
    return one_line(f"{how}: {lines[-1]}" if lines else how)


def run_isolated(component: str, args: argparse.Namespace) -> dict[str, Any]:
    """Check ``component`` in a capped subprocess; a crash, kill or timeout is a FAILED row."""
    with tempfile.TemporaryDirectory(prefix="paper-shapes-") as tmp:
        row_file = Path(tmp) / "row.json"
        command = [sys.executable, str(Path(__file__).resolve()), "--one", component,
                   "--row-file", str(row_file), "--cache-dir", str(Path(tmp) / "cache"),
                   "--mem-gib", str(args.mem_gib), "--device", args.device,
                   "--threads", str(args.threads), "--attack-target", args.attack_target]
        for plugin in args.plugin:
            command += ["--plugin", plugin]
        started = time.perf_counter()
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout)
        except subprocess.TimeoutExpired:
            return failed_row(component, f"timed out after {args.timeout} s")
        if row_file.is_file():
            row = json.loads(row_file.read_text())
        else:
            row = failed_row(component, exit_reason(done.returncode, done.stderr))
        row["wall_s"] = time.perf_counter() - started
        return row


def failed_row(component: str, reason: str) -> dict[str, Any]:
    return {"component": component, "status": "FAILED", "error": reason}


def _num(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:.{digits}f}"


def _networks(row: dict[str, Any]) -> str:
    sizes = row.get("networks_m") or {}
    return ", ".join(f"{name} {size:,.1f}" for name, size in sizes.items()) or "—"


def _status(row: dict[str, Any]) -> str:
    if row["status"] == "ok":
        return "ok"
    where = f" ({row['phase']})" if row.get("phase") else ""
    return f"FAILED{where}: {row.get('error', '?')}"


def _cells(row: dict[str, Any]) -> list[str]:
    kind, _, name = row["component"].partition(":")
    if kind == "attack":
        return [name, _status(row), _networks(row), _num(row.get("peak_gib")),
                _num(row.get("prepare_s"), 1), _num(row.get("prepare_s_per_step")),
                _num(row.get("invert_s"), 1), _num(row.get("invert_s_per_step")),
                row.get("output", "—")]
    params = next(iter((row.get("networks_m") or {}).values()), None)
    return [name, _status(row), _num(params, 1), _num(row.get("peak_gib")),
            _num(row.get("train_step_s")), _num(row.get("forward_s")), row.get("output", "—")]


def markdown(rows: Sequence[dict[str, Any]]) -> str:
    """The attack table and the model table, in markdown."""
    out = []
    for prefix, header in (("attack:", ATTACK_COLUMNS), ("target:", TARGET_COLUMNS)):
        chosen = [r for r in rows if r["component"].startswith(prefix)]
        if not chosen:
            continue
        lines = [header, ["---"] * len(header)] + [_cells(r) for r in chosen]
        out.append("\n".join("| " + " | ".join(map(str, line)) + " |" for line in lines))
    return "\n\n".join(out)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma list of components "
                        "(attack:NAME, target:NAME); default: all")
    parser.add_argument("--mem-gib", type=float, default=12.0,
                        help="address-space cap of each subprocess (CPU)")
    parser.add_argument("--timeout", type=int, default=1200, help="seconds per component")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per component "
                        "(1: two OpenMP threads on 2 shared cores ran a step ~20x slower)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--attack-target", default="evolve",
                        help="zoo model the attacks run against (closed-set by default, so "
                        "the FGMIA ablations' TransF/ScaleFT paths run)")
    parser.add_argument("--plugin", action="append", default=[], help="a .py file that "
                        "registers more attacks (repeatable)")
    parser.add_argument("--json", default="", help="write the rows to this JSON file")
    parser.add_argument("--one", default="", help=argparse.SUPPRESS)
    parser.add_argument("--row-file", default="", help=argparse.SUPPRESS)
    parser.add_argument("--cache-dir", default="", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    for plugin in args.plugin:
        load_plugin_file(plugin)
    device = resolve_device(args.device)
    if args.one:  # the subprocess: cap, check, write the row
        if device.type == "cpu":
            cap_memory(args.mem_gib)
        torch.set_num_threads(args.threads)
        row = run_one(args.one, device, args.attack_target, Path(args.cache_dir))
        Path(args.row_file).write_text(json.dumps(row, indent=1))
        return 0 if row["status"] == "ok" else 1
    chosen = [c.strip() for c in args.only.split(",") if c.strip()] or components()
    print(f"paper shapes: commit {source_commit()}, {os.cpu_count()} CPU cores, "
          f"{args.threads} torch threads, {device}, cap {args.mem_gib:g} GiB per component, "
          f"attacks against {args.attack_target}", flush=True)
    rows = []
    for component in chosen:
        rows.append(run_isolated(component, args))
        row = rows[-1]
        print(f"{component}: {_status(row)} ({_num(row.get('wall_s'), 0)} s)", flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=1))
    print()
    print(markdown(rows))
    failed = [r["component"] for r in rows if r["status"] != "ok"]
    if failed:
        print(f"\nFAILED: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
