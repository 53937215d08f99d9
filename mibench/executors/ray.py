"""Run a grid on a Ray cluster: every cell, target and prior a Ray task (README "Running on a
cluster").

Jobs form three waves, joined by Ray object references so that a job starts when what it
needs exists:

1. ``world``: render (or load) the world into the cache;
2. one job per distinct target of the plan and one for the evaluation model (after 1), and one
   *prior job* per distinct (attack, aux, target if the attack's prior depends on it): it runs
   the attack's ``prepare`` once, so cells that share a prior wait for it instead of training
   it twice (after the target it queries);
3. one job per cell (after its target, the evaluation model and its prior), which finds every
   model in the cache and computes the cell with :func:`mibench.cell.run_cell`.

Every job trains into the shared cache (:class:`mibench.cache.Cache`: atomic rename, marker,
per-entry lock), so two jobs that still meet on one entry (a prior shared by two attacks)
build it once. Only the driver writes the results store and images. A worker that dies is
retried ``max_retries`` times by Ray; then its cell is recorded as failed.

Every cell books one prepare, as under the local executor. The first cell of a group books the
prior job's time and queries *instead of* its own prepare, which only repeated that job: a
cache load, or the same uncached work with the same seed. The other cells book their own.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType
from typing import Any, Iterator, Sequence

import torch
from tqdm.auto import tqdm

from mibench import precision
from mibench.attack import Attack
from mibench.cache import Cache
from mibench.cell import (CellFailure, CellOutcome, CellSetting, PrepareCost,
                          attack_setting, build_attack, run_cell, seeded_prepare)
from mibench.errors import MibenchError
from mibench.executors.base import Batch, Finished
from mibench.registry import ATTACKS, load_plugin_file
from mibench.runconfig import build_world
from mibench.store import CellKey
from mibench.targets.enrolment import run_enrolment
from mibench.targets.zoo import (DEFAULT_EVALUATOR, get_entry, load_entry, load_evaluator,
                                 resolve_device, second_evaluator_name)
from mibench.world import World

GIB = 1 << 30


@dataclass(frozen=True)
class TaskResources:
    """What each job asks Ray for; GPUs are added when the run may use CUDA and the cluster
    has GPUs (one per job: one cell per GPU)."""

    cpus: int
    memory_gib: float


# CPU threads and memory of one job per preset (plus a GPU where the cluster has them)
PRESET_RESOURCES = {
    "smoke": TaskResources(cpus=1, memory_gib=0.5),
    "mini": TaskResources(cpus=2, memory_gib=4),
    "paper": TaskResources(cpus=4, memory_gib=32),
}


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker needs besides its job's arguments: the resolved tree (with an absolute
    cache directory), the plugin files to load and its torch thread count."""

    tree: dict[str, Any]
    plugins: tuple[str, ...]
    threads: int


def require_ray() -> ModuleType:
    """The ``ray`` module, or a one-line error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise MibenchError("--executor ray needs Ray: pip install 'mibench[ray]'") from None
    return ray


class RayExecutor:
    """Runs a batch's cells as Ray tasks on the cluster at ``address`` ('' = start a private
    local one for this run, 'auto' = the one started with ``ray start`` on this machine)."""

    def __init__(self, address: str = "", *, plugins: Sequence[str] = (),
                 max_retries: int = 2) -> None:
        require_ray()
        if max_retries < 0:
            raise MibenchError(f"max_retries must be >= 0, got {max_retries}")
        self.address = address
        self.plugins = tuple(str(Path(p).resolve()) for p in plugins)
        self.max_retries = max_retries

    def run(self, batch: Batch) -> Iterator[Finished]:
        if not batch.keys:
            return
        ray = require_ray()
        started_here = not ray.is_initialized()
        if started_here:
            _connect(ray, self.address)
        try:
            yield from self._run(ray, batch)
        finally:
            if started_here:
                ray.shutdown()

    def _run(self, ray: ModuleType, batch: Batch) -> Iterator[Finished]:
        resources = PRESET_RESOURCES[batch.preset]
        tree = json.loads(json.dumps(batch.tree))
        tree["run"]["cache_dir"] = str(Cache(tree["run"]["cache_dir"] or None).root.resolve())
        spec = WorkerSpec(tree, self.plugins, resources.cpus)
        options = {"num_cpus": resources.cpus, "num_gpus": _gpus(ray, tree["run"]["device"]),
                   "memory": int(resources.memory_gib * GIB), "max_retries": self.max_retries,
                   "retry_exceptions": False}

        remote = {fn: ray.remote(fn).options(**options)
                  for fn in (_world_job, _model_job, _prior_job, _cell_job)}

        def task(fn: Any, *args: Any) -> Any:
            return remote[fn].remote(spec, *args)

        world = task(_world_job)
        evaluator = task(_model_job, None, world)
        models = {name: task(_model_job, name, world)
                  for name in dict.fromkeys(k.target for k in batch.keys)}
        priors: dict[tuple[str, str, str], Any] = {}
        first_of_group: dict[CellKey, Any] = {}
        cells = {}
        for key in batch.keys:
            group = _prior_group(key)
            if group is not None and group not in priors:
                priors[group] = task(_prior_job, key, models[key.target])
                first_of_group[key] = priors[group]
            deps = [models[key.target], evaluator, *([priors[group]] if group else [])]
            batch.on_start(key)
            cells[task(_cell_job, key, *deps)] = key
        _raise_setup_failure(ray, [world, evaluator])

        pending = list(cells)
        with tqdm(total=len(pending), desc="cells (ray)", unit="cell",
                  disable=not batch.show_progress) as progress:
            while pending:
                (done,), pending = ray.wait(pending, num_returns=1)
                key = cells[done]
                outcome = self._outcome(ray, done)
                if isinstance(outcome, CellOutcome) and key in first_of_group:
                    outcome = _book_prepare(outcome, ray.get(first_of_group[key]))
                progress.update()
                yield key, outcome

    def _outcome(self, ray: ModuleType, ref: Any) -> CellOutcome | CellFailure:
        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as err:  # a target or prior job raised
            return CellFailure(_first_line(err), str(err))
        except ray.exceptions.RayError as err:  # the worker died on every try
            message = (f"{type(err).__name__}: the worker died {self.max_retries + 1} time(s) "
                       f"running this cell or a job it needs")
            return CellFailure(message, str(err))


def _connect(ray: ModuleType, address: str) -> None:
    """Join the cluster at ``address``; '' starts a private instance even where ``ray start``
    or ``$RAY_ADDRESS`` names another (Ray's own default would join that one)."""
    quiet = {"logging_level": logging.WARNING, "log_to_driver": False}
    if address:
        ray.init(address=address, **quiet)
    else:
        ray.init(address="local", include_dashboard=False, **quiet)


def _gpus(ray: ModuleType, device: str) -> int:
    """One GPU per job when the run may use CUDA and the cluster has GPUs."""
    has_gpus = ray.cluster_resources().get("GPU", 0) > 0
    if device == "cuda" and not has_gpus:
        raise MibenchError("--device cuda, but the Ray cluster has no GPUs; use --device auto "
                           "or cpu, or add GPU nodes")
    return int(device != "cpu" and has_gpus)


def _raise_setup_failure(ray: ModuleType, refs: list[Any]) -> None:
    """Wait for the world and the evaluation model; a failure ends the run, as it does with
    the local executor."""
    try:
        ray.get(refs)
    except ray.exceptions.RayError as err:
        raise MibenchError(f"building the world or evaluation model failed: "
                           f"{_first_line(err)}") from err


def _first_line(err: Exception) -> str:
    """``Type: message`` of the exception a Ray task raised (or of the Ray error itself)."""
    cause = getattr(err, "cause", None) or err
    return f"{type(cause).__name__}: {cause}".splitlines()[0]


def _prior_group(key: CellKey) -> tuple[str, str, str] | None:
    """Cells sharing a prior: same attack and aux, and same target when the prior depends on
    it. ``None`` for attacks with nothing to prepare."""
    attack = ATTACKS.get(key.attack)
    if attack.prepare is Attack.prepare:
        return None
    return (key.attack, key.aux, key.target if attack.spec.target_dependent_prior else "")


def _book_prepare(outcome: CellOutcome, cost: PrepareCost) -> CellOutcome:
    """``outcome`` with ``cost`` (its prior job's) booked as its prepare, in place of its own."""
    timings = {**outcome.timings, "prepare_s": cost.prepare_s}
    return replace(outcome, timings=timings, queries={**outcome.queries, "prepare": cost.queries})


# --- run in the workers ------------------------------------------------------------------------

_WORKER: dict[str, Any] = {"plugins": set(), "world": None, "setting": None}


def _enter(spec: WorkerSpec) -> None:
    """Make this worker process match the driver: threads, plugins, precision."""
    torch.set_num_threads(spec.threads)
    run = spec.tree["run"]
    precision.configure(run.get("precision", "auto"), resolve_device(run["device"]),
                        run.get("compile", "off"))
    for path in spec.plugins:
        if path not in _WORKER["plugins"]:
            load_plugin_file(path)
            _WORKER["plugins"].add(path)


def _world_id(tree: dict[str, Any]) -> str:
    return json.dumps([tree["preset"], tree["world"], tree["run"]["world"],
                       tree["run"]["cache_dir"], tree["run"]["device"]], sort_keys=True)


def _world(spec: WorkerSpec) -> World:
    """The run's world, loaded once per worker process (and world)."""
    memo = _WORKER["world"]
    if memo is None or memo[0] != _world_id(spec.tree):
        cache = Cache(spec.tree["run"]["cache_dir"])
        memo = (_world_id(spec.tree), build_world(spec.tree, cache, progress=False))
        _WORKER["world"] = memo
    return memo[1]


def _setting(spec: WorkerSpec) -> CellSetting:
    """This run's :class:`CellSetting`; world and private reference are kept per process."""
    memo = _WORKER["setting"]
    if memo is None or memo[0] != _world_id(spec.tree):
        memo = (_world_id(spec.tree), CellSetting.build(spec.tree, world=_world(spec),
                                                        show_progress=False))
        _WORKER["setting"] = memo
    return replace(memo[1], tree=spec.tree)


def _world_job(spec: WorkerSpec) -> str:
    _enter(spec)
    return _world(spec).fingerprint


def _model_job(spec: WorkerSpec, name: str | None, _world_done: str) -> str:
    """Train (or find) the target ``name``, or the evaluation model when ``name`` is None."""
    _enter(spec)
    tree, world = spec.tree, _world(spec)
    cache, device = Cache(tree["run"]["cache_dir"]), resolve_device(tree["run"]["device"])
    if name is None:
        for judge in [tree["run"].get("eval_model") or DEFAULT_EVALUATOR,
                      second_evaluator_name(tree["run"])]:
            if judge:
                load_evaluator(world, cache, tree["preset"], device, False, name=judge)
        return "evaluator"
    load_entry(get_entry(name, tree.get("defenses")), world, cache, tree["preset"], device,
               False)
    return name


def _prior_job(spec: WorkerSpec, key: CellKey, _target_done: str) -> PrepareCost:
    """Run ``prepare`` of the cell's attack once, seeded as the cell will be."""
    _enter(spec)
    tree = spec.tree
    attack = build_attack(key.attack, tree)
    _, ctx = attack_setting(attack, key.target, _world(spec), Cache(tree["run"]["cache_dir"]),
                            tree["preset"], resolve_device(tree["run"]["device"]), aux=key.aux,
                            seed=key.seed, enrolment=run_enrolment(tree["run"]),
                            enrolment_seed=tree["run"]["seed"], show_progress=False,
                            defenses=tree.get("defenses"))
    return seeded_prepare(attack, ctx)


def _cell_job(spec: WorkerSpec, key: CellKey, *_deps: Any) -> CellOutcome | CellFailure:
    _enter(spec)
    return run_cell(_setting(spec), key)
