"""Attacks: one file per attack, shared building blocks in ``priors/`` and ``losses``.

Importing this package registers the built-in attacks in ``mibench.registry.ATTACKS``.
"""

from mibench.attacks import gmi  # noqa: F401  (registers "gmi")
from mibench.attacks import fgmia  # noqa: F401  (registers "fgmia")
from mibench.attacks import fgmia_ablations  # noqa: F401  (registers the Table VI ablations)
from mibench.attacks import ppa  # noqa: F401  (registers "ppa")
from mibench.attacks import ifgmi  # noqa: F401  (registers "ifgmi")
from mibench.attacks import fmi  # noqa: F401  (registers "fmi")
from mibench.attacks import plg  # noqa: F401  (registers "plg")
from mibench.attacks import uami  # noqa: F401  (registers "uami")
from mibench.attacks import diffmi  # noqa: F401  (registers "diffmi")
from mibench.attacks import kedmi  # noqa: F401  (registers "kedmi")
from mibench.attacks import lomma  # noqa: F401  (registers "gmi+lomma" and "kedmi+lomma")
