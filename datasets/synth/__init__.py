"""The built-in synthetic face world (design.md §3).

``build_world(WorldConfig.resolve("mini"), Cache())`` renders (or loads from the cache) a world
with private, aux, aux-hq, aux-wild and public splits of disjoint synthetic identities.
"""

from mibench.datasets.synth.config import WorldConfig
from mibench.datasets.synth.world import build_world, load_world, world_key

__all__ = ["WorldConfig", "build_world", "load_world", "world_key"]
