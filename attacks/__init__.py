"""Attacks: one file per attack, shared building blocks in ``priors/`` and ``losses``.

Importing this package registers the built-in attacks in ``mibench.registry.ATTACKS``.
"""

from mibench.attacks import gmi  # noqa: F401  (registers "gmi")
from mibench.attacks import fgmia  # noqa: F401  (registers "fgmia" and its ablations)
