"""Cells in parallel local processes (``--workers``), for runs on a multi-core CPU.

The driver first builds the world, the evaluation model and the run's targets into the cache
with all its threads. Each worker process then loads its :class:`~mibench.cell.CellSetting`
once and computes whole cells with :func:`~mibench.cell.run_cell` on its share of the cores
(priors train there, in parallel); outcomes are yielded as they arrive, so only the driver's
harness writes images and the store. Two workers that need the same prior wait on the cache's
lock instead of training it twice. Cells seed torch from their key, so numbers do not depend on
which worker ran them. Cells start longest first, as earlier runs in the same store timed them
(the batch's expected costs).

Why processes: the models at ``mini`` are small, so torch's intra-op threads scale poorly — GMI
at ``mini`` on 2 cores takes 8.1 s per identity on one thread and 4.9 s on two (1.65×, not 2×),
while two one-thread processes finish two cells in about the time of one.
"""

from __future__ import annotations

import concurrent.futures as futures
import math
import multiprocessing
import os
import threading
import time
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
from tqdm.auto import tqdm

from mibench.cell import CellFailure, CellOutcome, CellSetting, run_cell
from mibench.errors import MibenchError
from mibench.executors.base import Batch, Finished
from mibench.executors.local import LocalExecutor
from mibench.registry import load_plugin_file
from mibench.store import CellKey
from mibench.targets.zoo import get_entry, load_entry

MAX_AUTO_WORKERS = 4
DRIVER_POLL_S = 1.0


def available_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def worker_layout(workers: int, device: torch.device,
                  cores: int | None = None) -> tuple[int, int]:
    """``(processes, torch threads per process)`` for ``--workers`` (0 = auto: one per core, at
    most :data:`MAX_AUTO_WORKERS`). On CUDA every cell runs in this process: ``(1, 0)``, where
    0 threads means "leave torch's setting alone"."""
    if device.type == "cuda" or workers == 1:
        return 1, 0
    cores = cores or available_cores()
    count = min(cores, MAX_AUTO_WORKERS) if workers == 0 else workers
    count = max(1, count)
    return count, max(1, cores // count)


class PoolExecutor:
    """Cells in ``workers`` spawned processes with ``threads`` torch threads each; a run with
    fewer than two cells left runs them here, as :class:`~mibench.executors.LocalExecutor`."""

    def __init__(self, workers: int, threads: int, *, plugins: Sequence[str] = ()) -> None:
        self.workers = workers
        self.threads = threads
        self.plugins = tuple(str(Path(p).resolve()) for p in plugins)

    def run(self, batch: Batch) -> Iterator[Finished]:
        if len(batch.keys) < 2 or self.workers < 2:
            yield from LocalExecutor().run(batch)
            return
        # the driver builds world, evaluation model and targets into the cache with all its
        # threads, so workers load them instead of waiting for one worker to train them
        setting = CellSetting.build(batch.tree, show_progress=batch.show_progress)
        for target in dict.fromkeys(key.target for key in batch.keys):
            load_entry(get_entry(target), setting.world, setting.cache, batch.preset,
                       setting.device, batch.show_progress)
        workers = min(self.workers, len(batch.keys))
        # longest first (as the store's earlier runs at this preset timed them; unknown cells
        # first of all, in plan order), so no long cell starts last while other workers idle
        costs = batch.expected_costs
        keys = sorted(batch.keys, key=lambda k: -costs.get((k.attack, k.target), math.inf))
        context = multiprocessing.get_context("spawn")  # fork and torch's threads do not mix
        with futures.ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker,
                                         initargs=(batch.tree, self.threads, self.plugins,
                                                   os.getpid())
                                         ) as pool:
            pending = {}
            for key in keys:
                batch.on_start(key)
                pending[pool.submit(_run_cell, key)] = key
            with tqdm(total=len(keys), desc=f"cells ({workers} workers)", unit="cell",
                      disable=not batch.show_progress) as progress:
                for done in futures.as_completed(pending):
                    try:
                        outcome = done.result()
                    except BrokenProcessPool as err:
                        raise MibenchError(
                            f"a worker process died ({err}); too little memory? Run with "
                            "--workers 1, and `mibench run --resume` keeps finished cells"
                        ) from err
                    progress.update()
                    yield pending[done], outcome


_SETTING: dict[str, Any] = {}


def _start_worker(tree: dict[str, Any], threads: int, plugins: tuple[str, ...],
                  driver: int) -> None:
    """Match the driver (plugins) and load what every cell shares, once per process; end when
    the driver ends, even if it was killed (its cells are redone by ``--resume``)."""
    threading.Thread(target=_exit_with, args=(driver,), daemon=True).start()
    torch.set_num_threads(threads)
    for path in plugins:
        load_plugin_file(path)
    _SETTING["setting"] = CellSetting.build(tree, show_progress=False)


def _exit_with(driver: int) -> None:
    """Exit this worker as soon as ``driver`` is no longer its parent."""
    while os.getppid() == driver:
        time.sleep(DRIVER_POLL_S)
    os._exit(1)


def _run_cell(key: CellKey) -> CellOutcome | CellFailure:
    return run_cell(_SETTING["setting"], key)
