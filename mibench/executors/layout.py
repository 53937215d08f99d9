"""How many cell processes a local run starts, with how many torch threads, on which GPU.

On a CPU: one process per core (at most :data:`MAX_AUTO_WORKERS`), sharing the cores that are
free — on a machine another job keeps busy, fewer threads per process (issue 23.8: two threads
per process on two loaded cores train slower than one). On CUDA: one process per visible GPU,
each seeing only its own device (``CUDA_VISIBLE_DEVICES``); one GPU runs in this process.
"""

from __future__ import annotations

import os
import time
from typing import Sequence

import torch

MAX_AUTO_WORKERS = 4


def available_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def machine_load() -> float:
    """The one-minute load average minus this process's own share of it (its CPU seconds
    over the last minute, at most one core), or 0 where the OS has no load average."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return 0.0
    own = min(1.0, time.process_time() / 60.0)
    return max(0.0, load - own)


def free_cores(cores: int, load: float) -> int:
    """Cores not kept busy by other processes: ``cores − round(load)``, at least one."""
    return max(1, cores - round(max(0.0, load)))


def visible_gpus() -> tuple[str, ...]:
    """The CUDA devices this process may use, as ``CUDA_VISIBLE_DEVICES`` names them (an
    existing list is honoured: its entries, not 0..N-1)."""
    count = torch.cuda.device_count()
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is None:
        return tuple(str(i) for i in range(count))
    return tuple(d.strip() for d in listed.split(",") if d.strip())[:count]


def gpu_assignment(gpus: Sequence[str], workers: int) -> tuple[str, ...]:
    """``CUDA_VISIBLE_DEVICES`` of each of ``workers`` processes: the GPUs in turn."""
    if not gpus:
        return ()
    return tuple(gpus[i % len(gpus)] for i in range(workers))


def worker_layout(workers: int, device: torch.device, cores: int | None = None, *,
                  load: float | None = None, gpus: int | None = None,
                  threads: int = 0) -> tuple[int, int]:
    """``(processes, torch threads per process)`` for ``--workers`` (0 = auto) and
    ``run.threads`` (0 = auto); 0 threads means "leave torch's setting alone".

    CPU, auto: one process per core, at most :data:`MAX_AUTO_WORKERS`. CUDA: one process per
    visible GPU (``gpus``, default: counted), at most one per GPU; one GPU: ``(1, 0)``, in this
    process. Threads: ``free cores // processes`` (:func:`free_cores` of ``load``, default the
    :func:`machine_load`); a single process on an unloaded machine keeps torch's setting.
    """
    cores = cores or available_cores()
    if device.type == "cuda":
        gpus = len(visible_gpus()) if gpus is None else gpus
        count = 1 if workers == 1 or gpus < 2 else min(workers or gpus, gpus)
        if count == 1:
            return 1, threads
    else:
        count = max(1, min(cores, MAX_AUTO_WORKERS) if workers == 0 else workers)
    if threads:
        return count, threads
    free = free_cores(cores, machine_load() if load is None else load)
    if count == 1:
        return 1, 0 if free >= cores else free
    return count, max(1, free // count)
