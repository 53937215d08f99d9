"""What each attack runs, as counted phases: which networks, at which batch and input shapes,
how many steps — read from the attack's resolved ``Config`` and the world's sizes.

An attack's workload function (registered with :func:`workload`) returns its :class:`Phase` s:
the priors it trains (shared across cells, or once per target when the prior depends on it) and
its attack run (once per cell). Networks are built from the attacks' and targets' own classes
on the meta device. The passes follow the training and attack loops of ``attacks/`` closely but
not op for op: augmentations are counted as a copy of the image (no FLOPs), and losses as the
networks' outputs. An attack without a registered workload is reported as "no estimate".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, Literal

import torch

from mibench.config import Config
from mibench.planning.count import Pass, StepCost, on_meta, step_cost
from mibench.targets.models import build_target
from mibench.targets.zoo import get_entry

Role = Literal["prior", "attack"]
ADAM_SLOTS = 2
WORKLOADS: dict[str, Callable[[Config, "Setting"], list["Phase"]]] = {}


@dataclass(frozen=True)
class Setting:
    """The cell's sizes: preset, target, protocol and world counts (from configs only)."""

    preset: str
    target: str
    identities: int
    samples: int
    aux_images: int
    num_classes: int
    world_resolution: int

    @property
    def generated(self) -> int:
        """Images the attack returns: identities × samples."""
        return self.identities * self.samples

    def aux_bytes(self, resolution: int) -> int:
        """The aux split as uint8 on the device at ``resolution`` (``aux_images``)."""
        return self.aux_images * 3 * resolution * resolution


@dataclass(frozen=True)
class Phase:
    """``steps`` repetitions of one counted step. ``share`` identifies a prior across cells
    (it names the target when the prior depends on it); ``None`` for the attack run."""

    label: str
    role: Role
    steps: float
    cost: Callable[[], StepCost]
    share: tuple[Any, ...] | None = None
    note: str = ""


def workload(name: str) -> Callable[[Callable], Callable]:
    def add(fn: Callable) -> Callable:
        WORKLOADS[name] = fn
        return fn
    return add


def frozen_key(cfg: Config, fields: tuple[str, ...]) -> tuple[Any, ...]:
    """A hashable identity of ``cfg``'s ``fields`` (tuples kept, lists made tuples)."""
    return tuple((f, tuple(v) if isinstance(v, (list, tuple)) else v)
                 for f, v in ((f, getattr(cfg, f)) for f in fields))


def whole_config(cfg: Config) -> tuple[Any, ...]:
    """The identity of a prior that only its own attack trains: its whole config (one config
    per attack in a plan, so this never splits a prior the cache would share)."""
    return frozen_key(cfg, tuple(cfg.field_names()))


def batches(items: float, batch: int) -> int:
    return max(1, math.ceil(items / batch))


def combine(*costs: StepCost) -> StepCost:
    """Parts of one pass measured apart (e.g. generator, then target): everything adds up,
    since both graphs are alive until the shared backward."""
    return StepCost(sum(c.flops for c in costs), sum(c.state_bytes for c in costs),
                    sum(c.activation_bytes for c in costs), sum(c.data_bytes for c in costs))


def scaled(cost: StepCost, times: float, *, memory: bool = False) -> StepCost:
    """``times`` repetitions in one step: FLOPs scale; activations too when the repetitions'
    graphs are all alive at once (``memory``, e.g. back-propagating through a sampler)."""
    return StepCost(cost.flops * times, cost.state_bytes,
                    int(cost.activation_bytes * (times if memory else 1)), cost.data_bytes)


def sequential(*costs: StepCost) -> StepCost:
    """Passes of one step that back-propagate one after the other: FLOPs and state add up, the
    activation peak is the largest pass's."""
    return StepCost(sum(c.flops for c in costs), sum(c.state_bytes for c in costs),
                    max(c.activation_bytes for c in costs), sum(c.data_bytes for c in costs))


def with_data(cost: StepCost, data_bytes: int) -> StepCost:
    return StepCost(cost.flops, cost.state_bytes, cost.activation_bytes,
                    cost.data_bytes + data_bytes)


# --- targets as seen by attacks --------------------------------------------------------------

@lru_cache(maxsize=None)
def target_network(name: str, preset: str, num_classes: int) -> torch.nn.Module:
    """The zoo entry ``name`` at ``preset`` on the meta device, frozen (attacks never train it)."""
    cfg = get_entry(name).resolve(preset)
    return on_meta(lambda: build_target(cfg, num_classes)).requires_grad_(False)


# FLOPs and activation bytes of a network are linear in the batch, and a target resizes its
# input to its own resolution first (no FLOPs counted): each target is measured once per mode
# at this batch and its resolution, then scaled to the batch, with the input's bytes at the
# given side (tests/test_planning.py checks the scaling).
REFERENCE_BATCH = 4


def target_pass(setting: Setting, batch: int, side: int, grad: bool) -> StepCost:
    """The target on ``batch`` images of ``side`` px (already in [0, 1]); with ``grad`` the
    backward to the images (white-box attacks), else a forward query."""
    net = target_network(setting.target, setting.preset, setting.num_classes)
    unit = _target_reference(setting.target, setting.preset, setting.num_classes, grad)
    factor = batch / REFERENCE_BATCH
    resized = batch * 3 * 4 * (side * side - net.resolution * net.resolution)
    return StepCost(unit.flops * factor, unit.state_bytes,
                    max(0, int(unit.activation_bytes * factor + resized)), unit.data_bytes)


@lru_cache(maxsize=None)
def _target_reference(name: str, preset: str, num_classes: int, grad: bool) -> StepCost:
    net = target_network(name, preset, num_classes)
    side = net.resolution

    def run() -> torch.Tensor | None:
        images = torch.rand(REFERENCE_BATCH, 3, side, side, requires_grad=grad)
        if not grad:
            with torch.no_grad():
                net(images)
            return None
        logits, features = net(images)
        return logits.sum() + features.sum()

    return step_cost([Pass(run)], frozen=[net])


def target_queries(setting: Setting, images: float, side: int, batch: int = 256, *,
                   label: str = "target queries", role: Role = "attack",
                   share: tuple[Any, ...] | None = None) -> Phase:
    """Forward queries of the target on ``images`` images (labelling, selection)."""
    return Phase(label, role, images / batch,
                 lambda: target_pass(setting, batch, side, False), share=share)
