"""Metering for benchmarks on any device: FLOPs of one step, seconds of the others, the dtypes
the matmuls ran in (issue 17, Build 7; used by ``gpu_check.py``).

:class:`MeteredContext` is the attack context with every ``progress`` loop metered: a loop's
first step runs under :class:`StepFlops` (``torch.utils.flop_counter.FlopCounterMode``, totals
only: matmuls, convolutions, attention), its other steps are timed (the device synchronised),
so :func:`achieved_tflops` = FLOPs per step × timed steps / their seconds.
:func:`matmul_dtypes` tells whether autocast was active: the output dtype of every linear and
convolution forward, seen by a global forward hook.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Generator, Iterable, Iterator

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from mibench.attack import AttackContext

MATMUL_MODULES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d)


def now(device: torch.device) -> float:
    """The clock, after the device's queued work has finished."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


@dataclass
class LoopMeter:
    """One progress loop: FLOPs of its counted first step, seconds of its timed steps."""

    step_flops: float | None = None
    seconds: list[float] = field(default_factory=list)

    @property
    def timed_flops(self) -> float:
        return (self.step_flops or 0.0) * len(self.seconds)


class _GlobalScope:
    """Stands in for ``FlopCounterMode``'s module tracker: totals only, no module hooks."""

    parents = ("Global",)

    def __enter__(self) -> _GlobalScope:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


class StepFlops(FlopCounterMode):
    """``FlopCounterMode`` counting totals only: its per-module tracker puts backward hooks on
    module outputs, which ``torch.autograd.grad`` (WGAN-GP's gradient penalty) rejects."""

    def __init__(self) -> None:
        super().__init__(display=False)
        self.mod_tracker = _GlobalScope()  # type: ignore[assignment]


class MeteredBar:
    """A progress bar whose first step runs under :class:`StepFlops` and whose other steps
    are timed, into ``meter``; the bar's other methods (``set_postfix``, …) pass through."""

    def __init__(self, bar: Any, meter: LoopMeter, device: torch.device) -> None:
        self.bar, self.meter, self.device = bar, meter, device
        self._runs: list[Generator[Any, None, None]] = []

    def __iter__(self) -> Iterator[Any]:
        run = self._run()
        self._runs.append(run)
        return run

    def _run(self) -> Generator[Any, None, None]:
        for item in self.bar:
            if self.meter.step_flops is None:
                with StepFlops() as counter:
                    yield item
                self.meter.step_flops = float(counter.get_total_flops())
            else:
                start = now(self.device)
                yield item
                self.meter.seconds.append(now(self.device) - start)

    def close(self) -> None:
        """End the loops left mid-step (by an error), leaving their counters."""
        for run in self._runs:
            run.close()
        self._runs.clear()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.bar, name)


@dataclass
class MeteredContext(AttackContext):
    """The attack context with every ``progress`` loop metered by its ``desc``
    (:class:`MeteredBar`)."""

    loops: dict[str, LoopMeter] = field(default_factory=dict)
    bars: list[MeteredBar] = field(default_factory=list)

    def progress(self, iterable: Iterable[Any] | None = None, **kwargs: Any) -> Any:
        meter = self.loops.setdefault(str(kwargs.get("desc", "loop")), LoopMeter())
        bar = MeteredBar(super().progress(iterable, **kwargs), meter, self.device)
        self.bars.append(bar)
        return bar

    def close_loops(self) -> None:
        """End every loop an error left mid-step (and its counter)."""
        for bar in self.bars:
            bar.close()
        self.bars.clear()

    def take_loops(self) -> dict[str, LoopMeter]:
        loops, self.loops = self.loops, {}
        return loops


def achieved_tflops(loops: dict[str, LoopMeter]) -> float:
    """FLOPs per step × timed steps over the timed seconds, all loops together (NaN: none)."""
    seconds = sum(sum(m.seconds) for m in loops.values() if m.step_flops)
    flops = sum(m.timed_flops for m in loops.values())
    return flops / seconds / 1e12 if seconds > 0 else math.nan


@contextmanager
def matmul_dtypes(device: torch.device) -> Iterator[Counter[str]]:
    """Count the output dtypes of every linear / convolution forward (and whether autocast
    was on) while the block runs."""
    seen: Counter[str] = Counter()

    def hook(module: nn.Module, inputs: Any, output: Any) -> None:
        if isinstance(module, MATMUL_MODULES) and isinstance(output, torch.Tensor):
            autocast = "autocast" if torch.is_autocast_enabled(device.type) else "plain"
            seen[f"{str(output.dtype).removeprefix('torch.')} ({autocast})"] += 1

    handle = nn.modules.module.register_module_forward_hook(hook)
    try:
        yield seen
    finally:
        handle.remove()
