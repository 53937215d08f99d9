"""What a defense is: a typed config and hooks into building and training a target.

A defense changes how a zoo entry is built or trained, never how it is attacked (defenses know
no attacks). Each hook defaults to "no change":

* :meth:`Defense.modify` — architecture change of the freshly built backbone (MID's bottleneck,
  RoLSS's skip removal); it runs on every build, so checkpoints of defended models reload;
* :meth:`Defense.objective` — extra loss terms, label or input transforms, wrapping the
  target's training objective (:class:`DefenseObjective`);
* :attr:`Defense.transfer` — TL-DMI's pre-train / freeze / fine-tune schedule
  (:mod:`mibench.targets.defended`).
"""

from __future__ import annotations

from typing import Any, ClassVar, Mapping

from torch import Tensor, nn

from mibench.config import Config
from mibench.targets.architectures import Backbone


class DefenseObjective(nn.Module):
    """A training objective wrapping the target's own (``base``); :meth:`start` is told the
    number of optimiser steps, and ``progress`` ∈ [0, 1) counts training forwards."""

    def __init__(self, base: nn.Module) -> None:
        super().__init__()
        self.base = base
        self.total_steps = 1
        self.step = 0

    def start(self, total_steps: int) -> None:
        self.total_steps, self.step = max(1, total_steps), 0

    @property
    def progress(self) -> float:
        return min(1.0, self.step / self.total_steps)

    def tick(self) -> None:
        if self.training:
            self.step += 1

    def forward(self, target: nn.Module, images: Tensor, labels: Tensor) -> Tensor:
        raise NotImplementedError


class Defense:
    """Base class; subclasses set ``name``, ``paper``, ``Config`` and the swept ``strength``."""

    name: ClassVar[str]
    paper: ClassVar[str]
    Config: ClassVar[type[Config]]
    strength: ClassVar[str]
    sweep: ClassVar[tuple[float, ...]]
    transfer: ClassVar[bool] = False

    def __init__(self, config: Config) -> None:
        self.config = config

    @classmethod
    def from_overrides(cls, overrides: Mapping[str, Any] | None = None) -> Defense:
        return cls(cls.Config.resolve(None, overrides))

    def modify(self, backbone: Backbone) -> Backbone:
        return backbone

    def objective(self, base: nn.Module, target: nn.Module, num_classes: int) -> nn.Module:
        return base
