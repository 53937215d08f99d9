"""The benchmark loop: every (attack, target) cell of a run, resumable (design.md §4).

Each cell runs as :mod:`mibench.cell` describes (prepare, invert, select, evaluate); the
harness stores its images, metrics, timings and query counts. A failing cell records its error
and the run goes on. A cell is written in one transaction after its images
are in place, so ``--resume`` redoes exactly the cells that did not finish.

An *executor* (:mod:`mibench.executors`) decides where cells run and yields each outcome;
:func:`mibench.cell.run_cell` computes a cell and writes nothing but cache entries. The harness
plans the cells, marks each started when an executor hands it to a worker, and alone writes
images and the store (:meth:`Harness.record`).
"""

from __future__ import annotations

import logging
import os
import platform
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from mibench import precision
from mibench.cache import Cache
from mibench.cell import CellFailure, CellOutcome
from mibench.executors import Batch, Executor
from mibench.experiments import plan_cells, seeds
from mibench.store import CellKey, CellStatus, Store, Subset
from mibench.targets.zoo import resolve_device

log = logging.getLogger("mibench.harness")
PACKAGES = ("mibench", "torch", "torchvision", "numpy", "diffusers", "kornia", "lpips",
            "pytorch-fid", "scikit-learn")


@dataclass
class CellResult:
    key: CellKey
    status: CellStatus
    summary: dict[str, float | None]
    error: str | None = None


def package_versions() -> dict[str, str]:
    """Versions of Python and the packages behind the numbers, the source commit and the
    machine (the leaderboard states them)."""
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    out["commit"] = source_commit()
    out["machine"] = (f"{platform.machine()} {platform.processor() or ''}".strip()
                      + f", {os.cpu_count()} CPU cores, torch threads {torch.get_num_threads()}")
    return out


def source_commit() -> str:
    """The git commit of the mibench source tree (``+dirty`` with local changes), or
    ``unknown`` outside a checkout."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10, check=True)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain",
                                "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:4]


class Harness:
    """Runs the cells of one run described by a resolved configuration tree."""

    def __init__(self, tree: dict[str, Any], *, show_progress: bool = True) -> None:
        self.tree = tree
        self.run_cfg = tree["run"]
        self.preset = tree["preset"]
        self.show_progress = show_progress
        self.device = resolve_device(self.run_cfg["device"])
        precision.configure(self.run_cfg.get("precision", "auto"), self.device,
                           self.run_cfg.get("compile", "off"))
        self.cache = Cache(self.run_cfg["cache_dir"] or None)
        self.store = Store(self.run_cfg["results_dir"])
        self.plan = plan_cells(self.run_cfg)
        self.seeds = seeds(self.run_cfg)
        self.attacks = list(dict.fromkeys(c.attack for c in self.plan))
        self.targets = list(dict.fromkeys(c.target for c in self.plan))
        # one (aux, seed) per (attack, target): the classic images/ layout; several: a level each
        self.nested = len({c.aux for c in self.plan}) * len(self.seeds) > 1

    def cells(self, run_id: str) -> list[CellKey]:
        """The plan's cells, each once per seed."""
        return [CellKey(run_id, c.attack, c.target, c.aux, seed)
                for c in self.plan for seed in self.seeds]

    def start(self, run_id: str | None = None, command: str = "") -> str:
        """Register a new run (or re-open ``run_id``) and its cells; returns the run id."""
        if run_id is None:
            run_id = new_run_id()
            device = str(self.device)
            if self.run_cfg.get("executor") == "ray":  # the driver's device is not the workers'
                device = f"{self.run_cfg['device']} on a Ray cluster"
            self.store.create_run(run_id, self.tree, package_versions(), device, command)
        self.store.add_cells(self.cells(run_id))
        return run_id

    def execute(self, run_id: str, executor: Executor) -> list[CellResult]:
        """Run every unfinished cell of ``run_id`` with ``executor``, recording each outcome."""
        results: dict[CellKey, CellResult] = {}
        todo = []
        for key in self.cells(run_id):
            if self.store.status(key) == CellStatus.DONE:
                log.info("%s × %s: done earlier, kept", key.attack, key.target)
                results[key] = CellResult(key, CellStatus.DONE, self._summary(key))
            else:
                todo.append(key)
        batch = Batch(self.tree, tuple(todo), on_start=self.store.start_cell,
                      show_progress=self.show_progress,
                      expected_costs=self.store.cell_costs(self.preset))
        for key, outcome in executor.run(batch):
            results[key] = self.record(key, outcome)
        return [results[key] for key in self.cells(run_id)]

    def cell_dir(self, key: CellKey) -> Path:
        folder = self.store.root / key.run_id / key.attack / key.target
        return folder / key.aux / f"seed{key.seed}" if self.nested else folder

    def record(self, key: CellKey, outcome: CellOutcome | CellFailure) -> CellResult:
        """Write a cell's images and its store row (failed: ``error.log`` and the message)."""
        cell_dir = self.cell_dir(key)
        if isinstance(outcome, CellFailure):
            cell_dir.mkdir(parents=True, exist_ok=True)
            (cell_dir / "error.log").write_text(outcome.traceback)
            self.store.fail_cell(key, outcome.message)
            log.error("%s × %s failed: %s (traceback in %s)", key.attack, key.target,
                      outcome.message, cell_dir / "error.log")
            return CellResult(key, CellStatus.FAILED, {}, outcome.message)
        for warning in outcome.warnings:
            if self.store.add_run_warning(key.run_id, warning):
                log.warning("%s", warning)
        _write_images(cell_dir / "images", outcome.images, outcome.labels, outcome.selected)
        images = str((cell_dir / "images").relative_to(self.store.root))
        self.store.finish_cell(key, outcome.metrics, outcome.timings, outcome.queries, images,
                               outcome.intervals)
        return CellResult(key, CellStatus.DONE, self._summary(key))

    def _summary(self, key: CellKey) -> dict[str, float | None]:
        rows = [m for m in self.store.metrics(key.run_id) if m["subset"] == Subset.ALL
                and (m["attack"], m["target"], m["aux"], m["seed"]) == key.as_tuple()[1:]]
        return {m["name"]: m["value"] for m in rows}


def _write_images(folder: Path, images: torch.Tensor, labels: torch.Tensor,
                  selected: torch.Tensor) -> None:
    """``images/<identity>/<k>.png`` plus ``samples.pt``, written aside and renamed in."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    for stale in folder.parent.glob(f".{folder.name}-*"):  # left by a killed run
        shutil.rmtree(stale)
    tmp = folder.with_name(f".{folder.name}-{uuid.uuid4().hex[:6]}")
    tmp.mkdir()
    pixels = images.mul(255).round().to(torch.uint8)
    counters: dict[int, int] = {}
    for image, label in zip(pixels, labels.tolist()):
        k = counters.get(label, 0)
        counters[label] = k + 1
        (tmp / str(label)).mkdir(exist_ok=True)
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(tmp / str(label) / f"{k}.png")
    torch.save({"images": pixels, "labels": labels, "selected": selected}, tmp / "samples.pt")
    if folder.exists():
        shutil.rmtree(folder)
    tmp.rename(folder)


def summary_table(results: list[CellResult]) -> str:
    """A plain-text summary of the cells for the end of ``mibench run``."""
    header = ["attack", "target", "aux", "seed", "status", "eval_acc1", "target_acc1", "knn_l2"]
    rows = []
    for r in results:
        values = [r.summary.get(name) for name in header[5:]]
        rows.append([r.key.attack, r.key.target, r.key.aux, str(r.key.seed),
                     r.status if not r.error else f"failed: {r.error[:60]}",
                     *("—" if v is None else f"{v:.3f}" for v in values)])
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip()
                     for row in [header, *rows])

