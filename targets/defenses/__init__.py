"""Model-inversion defenses as modifiers of zoo entries (``ir152+mid``, ``arcface-18+negls``):
each changes how a target is built or trained (:mod:`mibench.targets.defenses.base`); none
knows any attack. ``mibench list defenses`` lists them.
"""

from __future__ import annotations

from mibench.targets.defenses.base import Defense, DefenseObjective
from mibench.targets.defenses.entries import (BUILTIN, check_defense, defended_objective,
                                              get_defense, modify_backbone)

__all__ = ["BUILTIN", "Defense", "DefenseObjective", "check_defense", "defended_objective",
           "get_defense", "modify_backbone"]
