"""The config block every GAN prior trained on the aux split shares (GMI, FMI, PLG-MI).

One rule keys the cache: a prior is keyed by the fields of its prior config class — this block
plus what the prior's training adds (``GMIPriorConfig``, ``FMIPriorConfig``, ``PLGPriorConfig``).
The attack's config subclasses its prior's config and adds the attack's own fields, so changing
an attack setting never retrains the prior. Attacks override a default here by re-declaring the
field with the paper's value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mibench.config import Config, param
from mibench.errors import ConfigError


@dataclass
class GANPriorConfig(Config):
    """Latent size, image side, network width and the prior's optimiser; defaults are the
    DCGAN-sized values the attacks share."""

    z_dim: int = param(128, "latent dimension", ge=1)
    resolution: int = param(64, "generator output side (power of two)", ge=16)
    width: float = param(1.0, "channel multiplier of the prior's networks (1 = 512..64)", gt=0)
    gan_batch_size: int = param(64, "prior training batch size", ge=2)
    gan_lr: float = param(2e-4, "Adam learning rate of the prior", gt=0)
    gan_betas: tuple[float, ...] = param((0.5, 0.999), "Adam betas of the prior")

    @classmethod
    def prior_settings(cls, config: Config) -> dict[str, Any]:
        """The cache key of the prior ``cls`` configures: ``config``'s values of ``cls``'s fields
        (``config`` is the attack's config, a subclass of ``cls``)."""
        if not isinstance(config, cls):
            raise ConfigError(f"{cls.__qualname__}.prior_settings needs a {cls.__qualname__} "
                              f"(or a subclass), got {type(config).__qualname__}")
        return {name: getattr(config, name) for name in cls.field_names()}
