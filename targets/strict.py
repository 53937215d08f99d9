"""Strict state-dict loading with a readable error (RobustBench-style: fail loudly)."""

from __future__ import annotations

from typing import Iterable, Mapping

import torch
from torch import nn

from mibench.targets.errors import CheckpointError

SHOWN = 5
TARGET_HINT = "check arch/depth/width/resolution/feature_dim and num_classes"


def _listed(keys: Iterable[str]) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:SHOWN])
    return f"{len(keys)} ({shown}{', …' if len(keys) > SHOWN else ''})"


def check_state_dict(expected: Mapping[str, torch.Tensor], found: Mapping[str, torch.Tensor],
                     source: str, *, error: type[Exception] = CheckpointError,
                     network: str = "the architecture", hint: str = TARGET_HINT) -> None:
    """Raise ``error`` (:class:`CheckpointError`) unless ``found`` has ``expected``'s keys and
    shapes; the message names ``source``, the ``network`` it should fit and the ``hint``."""
    missing = set(expected) - set(found)
    unexpected = set(found) - set(expected)
    wrong = sorted(k for k in set(expected) & set(found)
                   if tuple(expected[k].shape) != tuple(found[k].shape))
    problems = []
    if missing:
        problems.append(f"missing keys {_listed(missing)}")
    if unexpected:
        problems.append(f"unexpected keys {_listed(unexpected)}")
    if wrong:
        first = wrong[0]
        problems.append(f"{len(wrong)} shape mismatches (e.g. {first}: checkpoint "
                        f"{tuple(found[first].shape)} vs model {tuple(expected[first].shape)})")
    if problems:
        raise error(f"{source} does not fit {network}: {'; '.join(problems)}; {hint}")


def load_strict(module: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """``module.load_state_dict(state_dict, strict=True)`` with a one-line error listing keys."""
    check_state_dict(module.state_dict(), state_dict, source)
    module.load_state_dict(state_dict, strict=True)
