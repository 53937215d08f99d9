"""TL-DMI — Ho et al., "Model Inversion Robustness: Can Transfer Learning Help?", CVPR 2024,
§4: pre-train on public data, freeze the early layers, fine-tune only the rest on the private
data, so that the private data reach few parameters.

The freeze point is the paper's IR-152 index (its first 46 of 50 residual units; ``freeze``
= 0.92 of every backbone's units, stem included). The schedule splits the entry's training
volume: ``pretrain`` of it on public, the rest fine-tuning on private-train (ours: the paper
gives no split), so a TL-DMI target costs about as much as the undefended one. Frozen
BatchNorm layers keep their running statistics (momentum 0).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from mibench.config import Config, param
from mibench.registry import DEFENSES
from mibench.targets.architectures import Backbone
from mibench.targets.defenses.base import Defense
from mibench.targets.defenses.stages import stage_blocks

IR152_UNITS, IR152_FROZEN = 50, 46


@dataclass
class TLDMIConfig(Config):
    freeze: float = param(IR152_FROZEN / IR152_UNITS, "fraction of the residual units frozen "
                          "(with the stem) after pre-training; the paper's IR-152: 46 of 50",
                          ge=0.0, le=1.0, source="paper")
    pretrain: float = param(0.5, "fraction of the entry's training volume spent pre-training "
                            "on public data (the rest fine-tunes)", gt=0.0, lt=1.0,
                            source="ours")


def frozen_modules(backbone: Backbone, freeze: float) -> list[nn.Module]:
    """The stem and the first ⌊freeze·units⌉ residual units of ``backbone``."""
    inner = getattr(backbone, "inner", backbone)
    units = [block for stage in stage_blocks(inner) for block in stage]
    stem = inner.feature.input_layer if hasattr(inner, "feature") else nn.ModuleList(
        [inner.conv1, inner.bn1, inner.prelu])
    return [stem, *units[:round(freeze * len(units))]]


def freeze_early_layers(backbone: Backbone, freeze: float) -> list[nn.Parameter]:
    """Freeze the early layers in place (no gradients, BatchNorm statistics fixed); returns
    the frozen parameters."""
    frozen = []
    for module in frozen_modules(backbone, freeze):
        for sub in module.modules():
            if isinstance(sub, nn.modules.batchnorm._BatchNorm):
                sub.momentum = 0.0
        for parameter in module.parameters():
            parameter.requires_grad = False
            frozen.append(parameter)
    return frozen


@DEFENSES.register("tldmi")
class TLDMI(Defense):
    name = "tldmi"
    paper = "Ho et al., CVPR 2024: pre-train on public, freeze early layers, fine-tune the rest"
    Config = TLDMIConfig
    strength = "freeze"
    sweep = (0.5, 0.75, 0.92)
    transfer = True
