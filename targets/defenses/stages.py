"""The residual stages of the IR-SE and IResNet backbones (the layers BiDO regularises and
RoLSS strips of skips)."""

from __future__ import annotations

from torch import nn

from mibench.errors import ConfigError
from mibench.targets.architectures import IRSE, Backbone, IResNet
from mibench.targets.architectures.irse import UNITS

STAGES = 4


def stage_blocks(backbone: Backbone) -> list[list[nn.Module]]:
    """The residual blocks of each of the four stages, in order (an MID bottleneck's inner
    backbone for a bottlenecked one)."""
    backbone = getattr(backbone, "inner", backbone)
    if isinstance(backbone, IResNet):
        return [list(getattr(backbone, f"layer{i}")) for i in range(1, STAGES + 1)]
    if isinstance(backbone, IRSE):
        units, out, start = list(backbone.feature.body), [], 0
        depth = next(d for d, counts in UNITS.items() if sum(counts) == len(units))
        for count in UNITS[depth]:
            out.append(units[start:start + count])
            start += count
        return out
    raise ConfigError(f"defense needs a residual backbone (irse, iresnet), got "
                      f"{type(backbone).__name__}")
