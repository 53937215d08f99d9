"""The FGMIA ablations of paper Table VI, each registered as its own attack: ``fgmia-no-fg``
conditions the prior on the target's logits, ``fgmia-no-transf`` starts closed-set conditions
from the raw head rows, ``fgmia-no-scaleft`` uses the TransF directions unscaled
(``attacks/fgmia.py``; the last two equal FGMIA on open-set targets).

Remaining deviations from the official code: FGMIA's (``attacks/fgmia.py``); the public code
has no ablations, so these three are our definitions of the paper's Table VI rows (attacks.md
§8.7)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from mibench.attack import AttackSpec
from mibench.attacks.fgmia import FGMIA, FGMIAConfig
from mibench.attacks.fgmia_readings import SCALEFT_MODES
from mibench.config import Config, param
from mibench.registry import ATTACKS


@dataclass
class FGMIANoFGConfig(FGMIAConfig):
    """FGMIA without feature guidance: the prior is conditioned on the target's logits."""

    condition: str = param("logits", "ablation no-FG: condition on the target's logits",
                           choices=("feature", "logits"))


@dataclass
class FGMIANoTransFConfig(FGMIAConfig):
    """FGMIA without TransF: closed-set conditions start from the raw head rows."""

    transf: bool = param(False, "ablation no-TransF: raw head rows")


@dataclass
class FGMIANoScaleFTConfig(FGMIAConfig):
    """FGMIA without ScaleFT: TransF directions are used unscaled."""

    scaleft: str = param("none", "ablation no-ScaleFT: unscaled TransF directions",
                         choices=SCALEFT_MODES)


def _ablation_spec(name: str, title: str, *, closed_set_only: bool = False) -> AttackSpec:
    """An ablation's spec; ``closed_set_only``: it differs from FGMIA only on closed-set targets
    (TransF and ScaleFT act on the head; an open-set template is used as it is)."""
    return AttackSpec(name=f"fgmia-{name}", title=f"FGMIA ablation: {title}",
                      paper="Lu et al., TIFS", year=2025, access="whitebox",
                      prior="feature-conditioned diffusion", target_dependent_prior=True,
                      same_as_on_open_set="fgmia" if closed_set_only else None)


@ATTACKS.register("fgmia-no-fg")
class FGMIANoFG(FGMIA):
    """Table VI, no-FG: logits instead of features guide the prior."""

    spec = _ablation_spec("no-fg", "no feature guidance")
    Config: ClassVar[type[Config]] = FGMIANoFGConfig


@ATTACKS.register("fgmia-no-transf")
class FGMIANoTransF(FGMIA):
    """Table VI, no-TransF: the raw head row stands in for the identity's feature."""

    spec = _ablation_spec("no-transf", "no TransF", closed_set_only=True)
    Config: ClassVar[type[Config]] = FGMIANoTransFConfig


@ATTACKS.register("fgmia-no-scaleft")
class FGMIANoScaleFT(FGMIA):
    """Table VI, no-ScaleFT: the TransF direction is used as the condition unscaled."""

    spec = _ablation_spec("no-scaleft", "no ScaleFT", closed_set_only=True)
    Config: ClassVar[type[Config]] = FGMIANoScaleFTConfig
