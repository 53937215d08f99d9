"""RoLSS — Koh et al., "On the Vulnerability of Skip Connections to Model Inversion Attacks",
ECCV 2024, §4: remove the skip connections of the last stage(s), where they carry the most
private information; the stage's shortcut modules are removed too.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from mibench.config import Config, param
from mibench.registry import DEFENSES
from mibench.targets.architectures import Backbone
from mibench.targets.defenses.base import Defense
from mibench.targets.defenses.stages import STAGES, stage_blocks

SHORTCUTS = ("shortcut_layer", "downsample")


@dataclass
class RoLSSConfig(Config):
    last_stages: int = param(1, "how many of the last stages lose their skip connections "
                             "(the paper: the last one)", ge=1, le=STAGES, source="paper")


@DEFENSES.register("rolss")
class RoLSS(Defense):
    name = "rolss"
    paper = "Koh et al., ECCV 2024: no skip connections in the last stage"
    Config = RoLSSConfig
    strength = "last_stages"
    sweep = (1, 2)

    def modify(self, backbone: Backbone) -> Backbone:
        for stage in stage_blocks(backbone)[STAGES - self.config.last_stages:]:
            for block in stage:
                block.skip = False
                for name in SHORTCUTS:
                    if isinstance(getattr(block, name, None), nn.Module):
                        delattr(block, name)
        return backbone
