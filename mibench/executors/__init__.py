"""Where a run's cells execute: here (:class:`LocalExecutor`), in local worker processes
(:class:`PoolExecutor`, ``--workers``) or on a Ray cluster (:class:`RayExecutor`).

Every executor takes a :class:`Batch` and yields ``(key, outcome)`` as cells finish; each cell
is computed by :func:`mibench.cell.run_cell`, and only the harness records outcomes.
"""

from __future__ import annotations

from typing import Any, Sequence

from mibench.executors.base import Batch, Executor, Finished
from mibench.executors.local import LocalExecutor
from mibench.executors.layout import visible_gpus, worker_layout
from mibench.executors.pool import PoolExecutor
from mibench.executors.ray import RayExecutor
from mibench.targets.zoo import resolve_device

__all__ = ["Batch", "Executor", "Finished", "LocalExecutor", "PoolExecutor", "RayExecutor",
           "choose_executor"]


def choose_executor(run_cfg: dict[str, Any], plugins: Sequence[str] = ()) -> Executor:
    """The run's executor: a local process pool when ``workers`` (auto: one per core on CPU,
    one per visible GPU on CUDA) asks for more than one process, else :class:`LocalExecutor`;
    Ray for ``executor: ray``. ``plugins`` are the plugin files workers must load."""
    if run_cfg.get("executor", "local") == "local":
        device = resolve_device(run_cfg["device"])
        workers, threads = worker_layout(run_cfg.get("workers", 0), device,
                                         threads=run_cfg.get("threads", 0))
        if workers > 1:
            gpus = visible_gpus() if device.type == "cuda" else ()
            return PoolExecutor(workers, threads, plugins=plugins, gpus=gpus)
        return LocalExecutor(threads)
    return RayExecutor(run_cfg.get("address", ""), plugins=plugins)
