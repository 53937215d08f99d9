"""Cells in parallel local processes (``--workers``), for runs on a multi-core CPU.

The driver first builds the world, the evaluation model and the run's targets into the cache
with all its threads. Each worker process then loads its :class:`~mibench.cell.CellSetting`
once and computes whole cells with :func:`~mibench.cell.run_cell` on its share of the cores
(priors train there, in parallel); outcomes are yielded as they arrive, so only the driver's
harness writes images and the store. Two workers that need the same prior wait on the cache's
lock instead of training it twice. Cells seed torch from their key, so numbers do not depend on
which worker ran them. Cells start longest first, as earlier runs in the same store timed them
(the batch's expected costs), or by a static estimate without history
(:mod:`mibench.executors.ordering`). Each worker's stage shows under the cells bar
(:mod:`mibench.executors.status`). On CUDA each worker sees one GPU (``CUDA_VISIBLE_DEVICES``,
set before it first touches CUDA; :mod:`mibench.executors.layout`).

Why processes: the models at ``mini`` are small, so torch's intra-op threads scale poorly — GMI
at ``mini`` on 2 cores takes 8.1 s per identity on one thread and 4.9 s on two (1.65×, not 2×),
while two one-thread processes finish two cells in about the time of one.
"""

from __future__ import annotations

import concurrent.futures as futures
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
from mibench.executors.layout import gpu_assignment
from mibench.executors.local import LocalExecutor
from mibench.executors.ordering import submission_order
from mibench.executors.status import STATUS_QUEUE_SIZE, StatusBoard, StatusReporter
from mibench.registry import load_plugin_file
from mibench.store import CellKey
from mibench.targets.zoo import get_entry, load_entry

DRIVER_POLL_S = 1.0
STATUS_POLL_S = 0.5
SLOT_WAIT_S = 60.0


class PoolExecutor:
    """Cells in ``workers`` spawned processes with ``threads`` torch threads each (on CUDA,
    worker *i* sees only ``gpus[i]``); a run with fewer than two cells left runs them here, as
    :class:`~mibench.executors.LocalExecutor`."""

    def __init__(self, workers: int, threads: int, *, plugins: Sequence[str] = (),
                 gpus: Sequence[str] = ()) -> None:
        self.workers = workers
        self.threads = threads
        self.plugins = tuple(str(Path(p).resolve()) for p in plugins)
        self.gpus = tuple(gpus)

    def run(self, batch: Batch) -> Iterator[Finished]:
        if len(batch.keys) < 2 or self.workers < 2:
            yield from LocalExecutor(self.threads).run(batch)
            return
        # the driver builds world, evaluation model and targets into the cache with all its
        # threads, so workers load them instead of waiting for one worker to train them
        setting = CellSetting.build(batch.tree, show_progress=batch.show_progress)
        for target in dict.fromkeys(key.target for key in batch.keys):
            load_entry(get_entry(target, batch.tree.get("defenses")), setting.world, setting.cache, batch.preset,
                       setting.device, batch.show_progress)
        workers = min(self.workers, len(batch.keys))
        keys = submission_order(batch.keys, batch.expected_costs)
        context = multiprocessing.get_context("spawn")  # fork and torch's threads do not mix
        slots = context.Queue()
        for index, devices in enumerate(gpu_assignment(self.gpus, workers) or [None] * workers):
            slots.put((index, devices))
        updates = context.Queue(STATUS_QUEUE_SIZE)
        with futures.ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker,
                                         initargs=(batch.tree, self.threads, self.plugins,
                                                   os.getpid(), slots, updates)
                                         ) as pool:
            pending = {}
            for key in keys:
                batch.on_start(key)
                pending[pool.submit(_run_cell, key)] = key
            yield from _collect(pending, updates, workers, batch.show_progress)


def _collect(pending: dict[futures.Future, CellKey], updates: Any, workers: int,
             show_progress: bool) -> Iterator[Finished]:
    """Yield each cell's outcome as it arrives, with each worker's status under the bar."""
    with tqdm(total=len(pending), desc=f"cells ({workers} workers)", unit="cell",
              disable=not show_progress) as progress:
        board = StatusBoard(updates, workers, enabled=show_progress)
        try:
            waiting = set(pending)
            while waiting:
                done, waiting = futures.wait(waiting, timeout=STATUS_POLL_S,
                                             return_when=futures.FIRST_COMPLETED)
                board.drain()
                for future in done:
                    progress.update()
                    yield pending[future], _outcome(future)
        finally:
            board.close()


def _outcome(future: futures.Future) -> CellOutcome | CellFailure:
    try:
        return future.result()
    except BrokenProcessPool as err:
        raise MibenchError(
            f"a worker process died ({err}); too little memory? Run with --workers 1, and "
            "`mibench run --resume` keeps finished cells") from err


_WORKER: dict[str, Any] = {}


def _start_worker(tree: dict[str, Any], threads: int, plugins: tuple[str, ...], driver: int,
                  slots: Any, updates: Any) -> None:
    """Take this worker's slot (its index and, on CUDA, its GPU: set before anything touches
    CUDA), match the driver (plugins) and load what every cell shares, once per process; end
    when the driver ends, even if it was killed (its cells are redone by ``--resume``)."""
    index, devices = slots.get(timeout=SLOT_WAIT_S)  # one per worker, put before it starts
    if devices is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = devices
    threading.Thread(target=_exit_with, args=(driver,), daemon=True).start()
    updates.cancel_join_thread()  # exiting never waits for the driver to read
    reporter = StatusReporter(updates, index)
    reporter.install()
    _WORKER["reporter"] = reporter
    if threads:
        torch.set_num_threads(threads)
    for path in plugins:
        load_plugin_file(path)
    _WORKER["setting"] = CellSetting.build(tree, show_progress=False)


def _exit_with(driver: int) -> None:
    """Exit this worker as soon as ``driver`` is no longer its parent."""
    while os.getppid() == driver:
        time.sleep(DRIVER_POLL_S)
    os._exit(1)


def _run_cell(key: CellKey) -> CellOutcome | CellFailure:
    reporter: StatusReporter = _WORKER["reporter"]
    reporter.start_cell(key)
    outcome = run_cell(_WORKER["setting"], key)
    reporter.send(f"{reporter.cell} done")
    return outcome
