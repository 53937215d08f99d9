"""The benchmark loop: every (attack, target) cell of a run, resumable (design.md §4).

For each cell: load the target (trained and cached on first use), wrap it in the access view
the attack's spec allows, ``prepare`` the attack's priors, ``invert`` ``samples`` images for
each of the first ``identities`` private identities, let the attack ``select`` one per identity,
evaluate both image sets, and store images, metrics, timings and query counts. A failing cell
records its error and the run goes on. A cell is written in one transaction after its images
are in place, so ``--resume`` redoes exactly the cells that did not finish.

An *executor* decides where cells run: :class:`LocalExecutor` (one after another in this
process), :class:`mibench.pool_executor.PoolExecutor` (``--workers``: local processes, the
default on a multi-core CPU) or :class:`mibench.ray_executor.RayExecutor` (Ray tasks). All
compute a cell with :func:`compute_cell`, which writes nothing but cache entries; the driver
alone writes images and the store (:meth:`Harness.record`).
"""

from __future__ import annotations

import logging
import os
import platform
import shutil
import subprocess
import time
import traceback
import uuid
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Iterator, Protocol, Sequence

import torch
from PIL import Image
from torch import nn

from mibench.access import QueryLedger, view_for
from mibench.attack import Attack, AttackContext
from mibench.cache import Cache
from mibench.errors import MibenchError
from mibench.experiments import plan_cells, seeds
from mibench.metrics.context import EvalContext
from mibench.metrics.evaluate import measure
from mibench.metrics.reference import PrivateReference, ReferenceStore
from mibench.registry import ATTACKS
from mibench.runconfig import build_world
from mibench.store import CellKey, Store
from mibench.targets.zoo import (DEFAULT_EVALUATOR, entry_key, evaluator_entry, get_entry,
                                 load_entry, load_evaluator, resolve_device)
from mibench.world import World

log = logging.getLogger("mibench.harness")
PACKAGES = ("mibench", "torch", "torchvision", "numpy", "diffusers", "kornia", "lpips",
            "pytorch-fid", "scikit-learn")


@dataclass
class CellResult:
    key: CellKey
    status: str
    summary: dict[str, float | None]
    error: str | None = None


def attack_setting(attack: Attack, target_name: str, world: World, cache: Cache, preset: str,
                   device: torch.device, *, aux: str = "similar", seed: int = 0,
                   show_progress: bool = True) -> tuple[nn.Module, AttackContext]:
    """The target ``target_name`` (trained and cached on first use) and the context ``attack``
    runs in: its access view over the target with a fresh query ledger, the aux split, and the
    cache fingerprints (naming the target too when the attack's prior depends on it)."""
    entry = get_entry(target_name)
    target = load_entry(entry, world, cache, preset, device, show_progress).target
    ledger = QueryLedger()
    aux_fingerprint = fingerprint = f"{world.fingerprint}:{aux}"
    if attack.spec.target_dependent_prior:
        fingerprint += f":{target_name}:{entry_key(entry, world, cache, preset)}"
    ctx = AttackContext(aux=world.aux(aux), cache=cache, device=device, seed=seed,
                        ledger=ledger, target=view_for(attack.spec.access, target, ledger),
                        preset=preset, data_fingerprint=fingerprint,
                        aux_fingerprint=aux_fingerprint, show_progress=show_progress)
    return target, ctx


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


@dataclass
class CellSetting:
    """What every cell of a run shares: the world and the private reference set, built or
    loaded once per process (the driver's for the local executor, each worker's for Ray)."""

    tree: dict[str, Any]
    world: World
    reference: PrivateReference
    cache: Cache
    device: torch.device
    show_progress: bool = True

    @classmethod
    def build(cls, tree: dict[str, Any], *, world: World | None = None,
              show_progress: bool = True) -> CellSetting:
        """Build (or load from the cache) the world, unless given, and the reference."""
        cache = Cache(tree["run"]["cache_dir"] or None)
        device = resolve_device(tree["run"]["device"])
        world = world or build_world(tree, cache, progress=show_progress)
        for aux in dict.fromkeys(c.aux for c in plan_cells(tree["run"])):
            world.aux(aux)  # a world without a planned aux split fails here, once
        eval_name = tree["run"].get("eval_model") or DEFAULT_EVALUATOR
        evaluator = load_evaluator(world, cache, tree["preset"], device, show_progress,
                                   name=eval_name)
        eval_key = entry_key(evaluator_entry(eval_name), world, cache, tree["preset"])
        reference = PrivateReference(world.split("private-train"), evaluator,
                                     store=ReferenceStore(cache, world.fingerprint, eval_key))
        return cls(tree, world, reference, cache, device, show_progress)


@dataclass
class CellOutcome:
    """What a finished cell hands back to the driver, which alone writes images and store."""

    images: torch.Tensor
    labels: torch.Tensor
    selected: torch.Tensor
    metrics: list[tuple[str, str, float | None, str | None]]
    timings: dict[str, float]
    queries: dict[str, Any]


@dataclass
class CellFailure:
    """A cell that raised: its one-line message and the full traceback."""

    message: str
    traceback: str


class Harness:
    """Runs the cells of one run described by a resolved configuration tree."""

    def __init__(self, tree: dict[str, Any], *, show_progress: bool = True) -> None:
        self.tree = tree
        self.run_cfg = tree["run"]
        self.preset = tree["preset"]
        self.show_progress = show_progress
        self.device = resolve_device(self.run_cfg["device"])
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

    def execute(self, run_id: str, executor: Executor | None = None) -> list[CellResult]:
        """Run every unfinished cell of ``run_id`` (locally unless ``executor`` is given)."""
        results: dict[CellKey, CellResult] = {}
        todo = []
        for key in self.cells(run_id):
            if self.store.status(key) == "done":
                log.info("%s × %s: done earlier, kept", key.attack, key.target)
                results[key] = CellResult(key, "done", self._summary(key))
            else:
                todo.append(key)
        for key, outcome in (executor or LocalExecutor()).run(self, todo):
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
            return CellResult(key, "failed", {}, outcome.message)
        _write_images(cell_dir / "images", outcome.images, outcome.labels, outcome.selected)
        images = str((cell_dir / "images").relative_to(self.store.root))
        self.store.finish_cell(key, outcome.metrics, outcome.timings, outcome.queries, images)
        return CellResult(key, "done", self._summary(key))

    def _summary(self, key: CellKey) -> dict[str, float | None]:
        rows = [m for m in self.store.metrics(key.run_id) if m["subset"] == "all"
                and (m["attack"], m["target"], m["aux"], m["seed"]) == key.as_tuple()[1:]]
        return {m["name"]: m["value"] for m in rows}


class Executor(Protocol):
    """Runs cells and yields each one's outcome as it finishes; never writes the store's
    results (:meth:`Harness.record` does), but may mark cells started."""

    def run(self, harness: Harness, keys: list[CellKey]
            ) -> Iterator[tuple[CellKey, CellOutcome | CellFailure]]: ...


def choose_executor(run_cfg: dict[str, Any], plugins: Sequence[str] = ()) -> Executor | None:
    """The run's executor: ``None`` (:class:`LocalExecutor`, cells one after another here), a
    local process pool (``workers``; auto on CPU, :mod:`mibench.pool_executor`) or Ray
    (:mod:`mibench.ray_executor`). ``plugins`` are the plugin files workers must load."""
    if run_cfg.get("executor", "local") == "local":
        from mibench.pool_executor import PoolExecutor, worker_layout

        workers, threads = worker_layout(run_cfg.get("workers", 0),
                                         resolve_device(run_cfg["device"]))
        return PoolExecutor(workers, threads, plugins=plugins) if workers > 1 else None
    from mibench.ray_executor import RayExecutor

    return RayExecutor(run_cfg.get("address", ""), plugins=plugins)


class LocalExecutor:
    """One cell after another in this process (the default)."""

    def run(self, harness: Harness, keys: list[CellKey]
            ) -> Iterator[tuple[CellKey, CellOutcome | CellFailure]]:
        if not keys:
            return
        setting = CellSetting.build(harness.tree, show_progress=harness.show_progress)
        for key in keys:
            harness.store.start_cell(key)
            yield key, run_cell(setting, key)


def run_cell(setting: CellSetting, key: CellKey) -> CellOutcome | CellFailure:
    """:func:`compute_cell`, with an exception turned into a :class:`CellFailure`."""
    try:
        return compute_cell(setting, key)
    except Exception as err:  # a failing cell is recorded and the run goes on
        return CellFailure(f"{type(err).__name__}: {err}".splitlines()[0], traceback.format_exc())


def compute_cell(setting: CellSetting, key: CellKey) -> CellOutcome:
    """One cell: prepare the attack, invert, select, evaluate. Writes nothing but cache entries.

    The global torch RNG is seeded with the cell's seed before ``prepare`` and again before
    ``invert``, so a cell's numbers depend on its key and the cache, not on what ran earlier
    in the process (or on which process ran it).
    """
    tree, run_cfg = setting.tree, setting.tree["run"]
    attack_cls = ATTACKS.get(key.attack)
    attack: Attack = attack_cls(attack_cls.Config(**tree["attacks"][key.attack]))
    target, ctx = attack_setting(attack, key.target, setting.world, setting.cache,
                                 tree["preset"], setting.device, aux=key.aux, seed=key.seed,
                                 show_progress=setting.show_progress)
    ledger, view = ctx.ledger, ctx.target
    n_ids = min(run_cfg["identities"], setting.world.num_private)
    labels = torch.arange(n_ids).repeat_interleave(run_cfg["samples"])

    timings: dict[str, float] = {}
    clock = time.perf_counter()
    torch.manual_seed(key.seed)
    attack.prepare(ctx)
    timings["prepare_s"] = time.perf_counter() - clock
    prepare_queries = {kind: ledger.total(kind) for kind in ledger.KINDS}

    torch.manual_seed(key.seed)
    clock = time.perf_counter()
    with ledger.scope(labels):
        images = attack.invert(view, labels.to(setting.device), ctx).detach().float().cpu()
        timings["attack_s"] = time.perf_counter() - clock
        _check_output(images, len(labels), key.attack)
        selected = attack.select(view, images, labels, ctx).cpu()
    elapsed = time.perf_counter() - clock
    timings["select_s"] = elapsed - timings["attack_s"]
    timings["attack_s_per_identity"] = elapsed / n_ids
    attack_queries = {kind: ledger.total(kind) - prepare_queries[kind] for kind in ledger.KINDS}

    clock = time.perf_counter()
    rows = []
    every = EvalContext(images, labels, target=target, private=setting.reference)
    subsets = {"all": every, "selected": every.subset(selected)}
    for subset in ctx.progress(subsets, desc=f"metrics {key.attack}×{key.target}", unit="set",
                               leave=False):
        for value in measure(subsets[subset]):
            rows.append((subset, value.name, value.value, value.reason))
    timings["eval_s"] = time.perf_counter() - clock
    queries = {"prepare": prepare_queries,
               "per_identity": {k: v / n_ids for k, v in attack_queries.items()},
               "ledger": ledger.to_dict()}
    return CellOutcome(images, labels, selected, rows, timings, queries)


def _check_output(images: torch.Tensor, expected: int, attack: str) -> None:
    if images.ndim != 4 or images.shape[:2] != (expected, 3):
        raise MibenchError(f"attack {attack} returned {tuple(images.shape)} images; it must "
                           f"return {expected}×3×H×W, one per label")
    if images.min() < 0 or images.max() > 1:
        raise MibenchError(f"attack {attack} returned images outside [0,1]; clamp or rescale")


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

