"""Datasets: the synthetic face world and real-data adapters (registered on import)."""

from mibench.datasets.real import world as _real_world  # noqa: F401  (registers celeba, folders)
from mibench.datasets.synth import world as _synth_world  # noqa: F401  (registers "synth")
