"""Counting one step of a workload on the meta device: FLOPs, live tensor bytes, state bytes.

A *step* is one or more :class:`Pass` es (a forward, then the backward of the loss it returns).
FLOPs come from ``torch.utils.flop_counter.FlopCounterMode`` (matmuls, convolutions and
attention; element-wise ops are not counted). Memory comes from :class:`LiveBytes`, a dispatch
mode that adds the bytes of every storage an op creates and subtracts them when its last tensor
dies: its peak is the activations autograd saves plus the temporaries of forward and backward.
Parameters, their gradients (allocated before the pass, as they persist between steps) and the
optimiser's slots are the step's *state*, counted from the parameter sizes.

Peak GPU memory of a step = state + resident data + the largest pass's live peak
× :data:`CALIBRATION` (allocator rounding and workspaces, see ``tests/test_planning.py``).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import FlopCounterMode

# Measured / estimated activation bytes of a CPU training step (tests/test_planning.py::
# test_calibration_against_cpu_peak: DCGAN critic, 64 px, batch 256, Adam; ru_maxrss growth
# 511 MB against 376 MB counted, i.e. 1.4 on the activations): the allocator's and oneDNN's
# workspaces. Not yet measured on a GPU, where cuDNN's workspaces differ.
CALIBRATION = 1.4
META = torch.device("meta")


class LiveBytes(TorchDispatchMode):
    """Tracks the bytes of storages created inside the mode while any tensor holds them."""

    def __init__(self) -> None:
        super().__init__()
        self._storages: dict[int, list[int]] = {}   # key → [bytes, live tensors]
        self.live = 0
        self.peak = 0

    def _release(self, key: int) -> None:
        entry = self._storages[key]
        entry[1] -= 1
        if entry[1] == 0:
            del self._storages[key]
            self.live -= entry[0]

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (),
                           kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for tensor in tree_flatten(out)[0]:
            if not isinstance(tensor, torch.Tensor):
                continue
            storage = tensor.untyped_storage()
            key = storage._cdata
            entry = self._storages.get(key)
            if entry is None:
                if _aliases_input(key, args, kwargs):
                    continue                    # a view of a tensor made outside the mode
                entry = self._storages[key] = [storage.nbytes(), 0]
                self.live += entry[0]
            entry[1] += 1
            weakref.finalize(tensor, self._release, key)
        self.peak = max(self.peak, self.live)
        return out


def _aliases_input(key: int, args: Any, kwargs: Any) -> bool:
    return any(isinstance(t, torch.Tensor) and t.untyped_storage()._cdata == key
               for t in tree_flatten((args, kwargs))[0])


@dataclass(frozen=True)
class Pass:
    """A forward on the meta device returning a loss to back-propagate (or ``None``: forward
    only), run ``times`` per step."""

    run: Callable[[], torch.Tensor | None]
    times: float = 1.0


@dataclass(frozen=True)
class PassCost:
    forward_flops: float
    backward_flops: float
    saved_bytes: int      # live after the forward: what autograd keeps (and the outputs)
    peak_bytes: int       # live peak over forward and backward


@dataclass(frozen=True)
class StepCost:
    """One step: FLOPs (all passes, ``times`` applied) and memory (bytes)."""

    flops: float
    state_bytes: int
    activation_bytes: int
    data_bytes: int

    @property
    def peak_bytes(self) -> float:
        return self.state_bytes + self.data_bytes + CALIBRATION * self.activation_bytes


def measure_pass(run: Callable[[], torch.Tensor | None]) -> PassCost:
    """FLOPs and live bytes of ``run()`` and of the backward of the loss it returns."""
    with torch.device(META), FlopCounterMode(display=False) as flops, LiveBytes() as live:
        loss = run()
        forward, saved = flops.get_total_flops(), live.live
        if loss is not None:
            loss.backward()
        del loss
    return PassCost(float(forward), float(flops.get_total_flops() - forward), saved, live.peak)


def step_cost(passes: Sequence[Pass], *, trained: Sequence[tuple[nn.Module, int]] = (),
              frozen: Sequence[nn.Module] = (), data_bytes: int = 0) -> StepCost:
    """Cost of one step. ``frozen``: modules whose parameters are only resident (no
    gradients); ``trained``: (module, optimiser slots per parameter: Adam 2, SGD with momentum
    1) — parameters, gradients and slots are state (a trained submodule of a frozen module
    counts once, as trained)."""
    multiplier: dict[int, tuple[torch.Tensor, int]] = {}
    for module in frozen:
        module.requires_grad_(False)
        multiplier.update((id(p), (p, 1)) for p in module.parameters())
    for module, slots in trained:
        module.requires_grad_(True)
        for p in module.parameters():
            p.grad = torch.zeros_like(p)
            multiplier[id(p)] = (p, 2 + slots)
    state = sum(p.numel() * p.element_size() * k for p, k in multiplier.values())
    costs = [(measure_pass(p.run), p.times) for p in passes]
    flops = sum((c.forward_flops + c.backward_flops) * times for c, times in costs)
    return StepCost(flops, state, max(c.peak_bytes for c, _ in costs), data_bytes)


def on_meta(build: Callable[[], nn.Module]) -> nn.Module:
    """``build()`` with every parameter and buffer on the meta device."""
    with torch.device(META):
        return build()
