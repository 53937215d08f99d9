"""Errors of the target zoo (one line each: the problem and the fix)."""

from __future__ import annotations

from mibench.errors import MibenchError


class TargetError(MibenchError):
    """A target cannot be built or trained from what it was given."""


class CheckpointError(TargetError):
    """A checkpoint is unreadable, unsafe, corrupt, or does not fit the architecture."""
