"""Errors of the real-data adapters (one line each: the problem and the fix)."""

from __future__ import annotations

from mibench.errors import MibenchError


class DataError(MibenchError):
    """A dataset folder is missing, incomplete, empty or in the wrong layout."""
