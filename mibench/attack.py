"""The attack contract (design.md §2).

An attack declares an :class:`AttackSpec` (who published it, what access it needs, what prior it
trains) and a typed ``Config`` whose defaults are the paper's values. ``prepare`` trains or loads
its priors (cached; target-dependent priors may query ``ctx.target``); ``invert`` returns one
image in [0, 1] per entry of ``labels``. Attacks see the target only through the access view
their spec allows, and the auxiliary split only — never private data. Registration checks the
contract (:func:`check_attack_contract`), so an incomplete attack fails at ``mibench list``,
not mid-run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterable

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from mibench.access import ACCESS_LEVELS, QueryLedger, TargetView
from mibench.cache import Cache
from mibench.config import Config
from mibench.errors import ConfigError, MibenchError
from mibench.selection import best_per_identity, label_confidence, label_hits
from mibench.world import Split

FORWARD_BATCH = 256
"""Images per gradient-free pass when an attack runs a network over many images (e.g. labelling,
encoding or featurising the aux split)."""

ProgressFactory = Callable[..., tqdm]
_PROGRESS: dict[str, ProgressFactory | None] = {"factory": None}


def set_progress_factory(factory: ProgressFactory | None) -> None:
    """Make every :meth:`AttackContext.progress` bar of this process ``factory(iterable,
    **kwargs)`` (a worker process forwards its bars to the driver); ``None`` restores tqdm."""
    _PROGRESS["factory"] = factory


def resize_uint8(images: torch.Tensor, resolution: int) -> torch.Tensor:
    """uint8 images resized (bilinear, antialiased, rounded) to ``resolution``; unchanged when
    already that size. Antialiased resizing works image by image, so a subset resized alone
    has the pixels it has in the resized whole."""
    if images.shape[-1] == resolution:
        return images
    resized = F.interpolate(images.float(), size=(resolution, resolution), mode="bilinear",
                            antialias=True, align_corners=False)
    return resized.round().clamp(0, 255).to(torch.uint8)


@dataclass(frozen=True)
class AttackSpec:
    """What an attack is and what it needs."""

    name: str
    title: str
    paper: str
    year: int
    access: str
    prior: str
    target_dependent_prior: bool = False
    same_as_on_open_set: str | None = None
    """The attack this one computes exactly on open-set targets (an ablation whose change only
    applies to a closed-set head); reports mark such rows instead of presenting them as new."""

    def __post_init__(self) -> None:
        if self.access not in ACCESS_LEVELS:
            raise ConfigError(f"AttackSpec {self.name!r}: access must be one of "
                              f"{ACCESS_LEVELS}, got {self.access!r}")


@dataclass
class AttackContext:
    """Everything an attack may use besides the target view: never private data."""

    aux: Split
    cache: Cache
    device: torch.device
    seed: int
    ledger: QueryLedger
    target: TargetView | None = None
    data_fingerprint: str = ""
    aux_fingerprint: str = ""
    preset: str = "mini"
    show_progress: bool = True
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("mibench.attack"))
    _aux_on_device: torch.Tensor | None = field(default=None, init=False, repr=False,
                                                compare=False)

    def __post_init__(self) -> None:
        if not self.aux_fingerprint:
            self.aux_fingerprint = self.data_fingerprint

    def generator(self, offset: int = 0) -> torch.Generator:
        """A fresh generator seeded from the run seed (on the attack's device)."""
        gen = torch.Generator(device=self.device)
        gen.manual_seed(self.seed + offset)
        return gen

    def aux_images(self, resolution: int) -> torch.Tensor:
        """The aux split as uint8 on the device, resized (antialiased) to ``resolution``."""
        return resize_uint8(self.aux.images, resolution).to(self.device)

    def aux_batch(self, indices: torch.Tensor, resolution: int) -> torch.Tensor:
        """The aux images at ``indices`` as uint8 on the device, resized (antialiased, on the
        device) to ``resolution``: the pixels of ``aux_images(resolution)[indices]`` without
        resizing the whole split. The split is kept on the device once, as uint8 at its own
        size, so a training step neither syncs with the host nor copies the split."""
        if self._aux_on_device is None:
            self._aux_on_device = self.aux.images.to(self.device)
        return resize_uint8(self._aux_on_device[indices.to(self.device)], resolution)

    def progress(self, iterable: Iterable[Any] | None = None, **kwargs: Any) -> tqdm:
        """A progress bar (hidden when progress display is off), or the process's
        :func:`set_progress_factory` bar."""
        factory = _PROGRESS["factory"]
        if factory is not None:
            return factory(iterable, **kwargs)
        return tqdm(iterable, disable=not self.show_progress, dynamic_ncols=True, **kwargs)


class Attack:
    """Base class: subclasses set ``spec`` and ``Config`` and implement :meth:`invert`."""

    spec: ClassVar[AttackSpec]
    Config: ClassVar[type[Config]] = Config

    def __init__(self, config: Config | None = None) -> None:
        self.config = config if config is not None else self.Config()
        if not isinstance(self.config, self.Config):
            raise ConfigError(f"{type(self).__name__} takes a {self.Config.__qualname__}, "
                              f"got {type(self.config).__name__}")

    def prepare(self, ctx: AttackContext) -> None:
        """Train or load the attack's priors (cached). Default: nothing to prepare."""

    def invert(self, target: TargetView, labels: torch.Tensor,
               ctx: AttackContext) -> torch.Tensor:
        """Images in [0, 1], N×3×H×W, one per entry of ``labels``."""
        raise NotImplementedError

    def select(self, target: TargetView, images: torch.Tensor, labels: torch.Tensor,
               ctx: AttackContext) -> torch.Tensor:
        """Index of each identity's best sample (identities in first-seen order).

        Default: the highest target probability of the intended identity when the access
        allows scores; with label-only access, the first sample labelled as that identity.
        """
        if target.access == "labels":
            return best_per_identity(label_hits(target, images, labels), labels)
        return best_per_identity(label_confidence(target, images, labels), labels)

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.config.to_dict().items())
        return f"{type(self).__name__}({params})"


class AttackContractError(MibenchError, TypeError):
    """A registered attack lacks part of the contract (``spec``, ``Config``, ``invert``)."""


def check_attack_contract(name: str, obj: Any) -> None:
    """Raise :class:`AttackContractError` unless ``obj`` is an :class:`Attack` subclass whose
    ``spec`` is an :class:`AttackSpec`, whose ``Config`` is a :class:`Config` subclass and
    which overrides :meth:`Attack.invert`."""
    spec, config = getattr(obj, "spec", None), getattr(obj, "Config", None)
    if not (isinstance(obj, type) and issubclass(obj, Attack)):
        problem = "is not a subclass of mibench.attack.Attack; derive the class from Attack"
    elif not isinstance(spec, AttackSpec):
        found = "has no `spec`" if spec is None else \
            f"has a `spec` of type {type(spec).__name__}, not AttackSpec"
        problem = (f"{found}; set `spec = AttackSpec(name=..., title=..., paper=..., year=..., "
                   f"access=..., prior=...)` on the class")
    elif not (isinstance(config, type) and issubclass(config, Config)):
        problem = ("has a `Config` that is not a mibench.config.Config subclass; declare "
                   "`@dataclass class MyConfig(Config)` and set `Config = MyConfig`")
    elif obj.invert is Attack.invert:
        problem = ("does not implement `invert`; define `invert(self, target, labels, ctx)` "
                   "returning one image in [0, 1] per label")
    else:
        return
    where = f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"
    raise AttackContractError(f"attack {name!r} ({where}) {problem}")
