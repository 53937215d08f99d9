"""The defenses registry (``DEFENSES``) and the hooks the zoo's builder and trainer call.

A defended :class:`~mibench.targets.config.TargetConfig` names its defense (``defense``) and
the defense's resolved config (``defense_config``); both are part of the target's cache key.
"""

from __future__ import annotations

from typing import Any, Mapping

from torch import nn

from mibench.errors import ConfigError
from mibench.registry import DEFENSES
from mibench.targets.architectures import Backbone
from mibench.targets.defenses.base import Defense
from mibench.targets.defenses.bido import BiDO
from mibench.targets.defenses.mid import MID
from mibench.targets.defenses.rolss import RoLSS
from mibench.targets.defenses.smoothing import LabelSmoothing, NegativeLabelSmoothing
from mibench.targets.defenses.tldmi import TLDMI
from mibench.targets.defenses.trapmid import TrapMID

BUILTIN: tuple[type[Defense], ...] = (MID, BiDO, LabelSmoothing, NegativeLabelSmoothing, TLDMI,
                                      TrapMID, RoLSS)


def get_defense(name: str, overrides: Mapping[str, Any] | None = None) -> Defense:
    """The defense ``name`` with its config: defaults (the official recipe), then
    ``overrides``."""
    defense_cls: type[Defense] = DEFENSES.get(name)
    return defense_cls.from_overrides(overrides)


def defense_of(defense: str, config: Mapping[str, Any]) -> Defense | None:
    """The defense a target config names, or None for an undefended one."""
    return get_defense(defense, config) if defense else None


def modify_backbone(defense: str, config: Mapping[str, Any], backbone: Backbone) -> Backbone:
    found = defense_of(defense, config)
    return backbone if found is None else found.modify(backbone)


def defended_objective(defense: str, config: Mapping[str, Any], objective: nn.Module,
                       target: nn.Module, num_classes: int) -> nn.Module:
    found = defense_of(defense, config)
    return objective if found is None else found.objective(objective, target, num_classes)


def check_defense(defense: str, arch: str) -> None:
    """Defenses act on the residual stages of IR-SE and IResNet backbones only."""
    if defense and arch not in ("irse", "iresnet"):
        raise ConfigError(f"defense {defense} applies to irse / iresnet targets, not {arch}")
