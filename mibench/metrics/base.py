"""The metric contract (design.md §2): a spec, a value or the reason there is none.

Each metric is a :class:`Metric`: a :class:`MetricSpec` (name, direction, one-line description,
what it needs) plus a function of the shared :class:`~mibench.metrics.context.EvalContext`. A
metric that cannot be computed raises :class:`MetricUnavailable` with the reason, which
:meth:`Metric.measure` stores in the :class:`MetricValue`. Nothing else is caught: the MIA
toolbox's FID silently became 0 on failure and PPA's ``attack.py`` swallowed metric errors in
try/except blocks (anchors.md §5); here a value is either real or explained.

A spec's ``pooling`` says how the metric combines over attacked identities, which is what its
95 % interval (:mod:`mibench.metrics.bootstrap`) resamples: ``images`` (a mean over images:
per-identity means weighted by their image counts), ``identities`` (an unweighted mean of
per-identity values, e.g. per-class PRDC) or ``set`` (a statistic of the whole image set, FID
and KID, which is recomputed on subsets of identities).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Literal, Mapping

import torch

from mibench.errors import MibenchError
from mibench.registry import METRICS

if TYPE_CHECKING:
    from mibench.metrics.context import EvalContext

Direction = Literal["higher", "lower"]
# What a metric needs; the vocabulary the harness and the report show.
Need = Literal["target", "eval_model", "eval2_model", "private_features", "private_images",
               "inception_weights", "alexnet_weights", "st_lpips_weights",
               "attribute_regressor"]
Pooling = Literal["images", "identities", "set"]
POOLINGS = ("images", "identities", "set")


class MetricUnavailable(MibenchError):
    """A metric cannot be computed here; the message says why and how to fix it."""


@dataclass(frozen=True)
class MetricSpec:
    """What a metric is: its name, which direction is better, a one-line description, its needs."""

    name: str
    direction: Direction
    description: str
    needs: tuple[Need, ...]
    pooling: Pooling = "images"

    def __post_init__(self) -> None:
        if self.direction not in ("higher", "lower"):
            raise ValueError(f"metric {self.name}: direction must be 'higher' or 'lower', "
                             f"got {self.direction!r}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"metric {self.name}: pooling must be one of {POOLINGS}, "
                             f"got {self.pooling!r}")
        if not self.description or "\n" in self.description:
            raise ValueError(f"metric {self.name}: the description must be one non-empty line")


@dataclass(frozen=True)
class Measured:
    """A value with what it rests on (sample counts, a std over subsets), for the report."""

    value: float
    detail: Mapping[str, float]


Pair = Literal["gg", "pp", "gp"]
"""Which rows a pairwise matrix pairs: generated (g) and private (p)."""


@dataclass(frozen=True)
class FeatureSets:
    """The labelled feature sets a set metric compares (rows are samples, labels identities).

    A set sliced by :meth:`of` remembers its rows in the sets it was sliced from (its root), so
    a pairwise matrix (:meth:`pairwise`) is computed once on the root and sliced for every
    resample of identities: the half-sample intervals of FID and KID recompute no products."""

    generated: torch.Tensor
    generated_labels: torch.Tensor
    private: torch.Tensor
    private_labels: torch.Tensor
    _root: FeatureSets | None = field(default=None, repr=False, compare=False)
    _rows: tuple[torch.Tensor, torch.Tensor] | None = field(default=None, repr=False,
                                                             compare=False)
    _pairwise: dict[tuple[str, str], torch.Tensor] = field(default_factory=dict, repr=False,
                                                           compare=False)

    def of(self, identities: torch.Tensor) -> FeatureSets:
        """The rows of ``identities`` only (what a resample of identities compares)."""
        mine = torch.isin(self.generated_labels, identities.to(self.generated_labels.device))
        theirs = torch.isin(self.private_labels, identities.to(self.private_labels.device))
        rows = (self._row_index("g")[mine.cpu()], self._row_index("p")[theirs.cpu()])
        return FeatureSets(self.generated[mine], self.generated_labels[mine],
                           self.private[theirs], self.private_labels[theirs],
                           _root=self._root or self, _rows=rows)

    def pairwise(self, key: str, pair: Pair,
                 fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """``fn(u, v)``, a |u|×|v| matrix of row pairs, for the sides ``pair`` names: computed
        once under ``key`` on the root sets and sliced to this set's rows."""
        root = self._root or self
        if (key, pair) not in root._pairwise:
            root._pairwise[key, pair] = fn(root._side(pair[0]), root._side(pair[1]))
        full = root._pairwise[key, pair]
        if self._root is None:
            return full
        first, second = (self._row_index(side).to(full.device) for side in pair)
        return full[first[:, None], second[None, :]]

    def _side(self, side: str) -> torch.Tensor:
        return self.generated if side == "g" else self.private

    def _row_index(self, side: str) -> torch.Tensor:
        """This set's rows of ``side`` in the root's."""
        if self._rows is None:
            return torch.arange(self._side(side).shape[0])
        return self._rows[0] if side == "g" else self._rows[1]


@dataclass(frozen=True)
class MetricValue:
    """One result: a finite ``value``, or ``value=None`` and the ``reason`` it is missing;
    ``detail`` holds what a :class:`Measured` value rests on."""

    name: str
    value: float | None
    reason: str | None = None
    detail: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (self.value is None) == (self.reason is None):
            raise ValueError(f"metric {self.name}: give exactly one of value and reason")
        if self.value is not None and not math.isfinite(self.value):
            raise ValueError(f"metric {self.name}: value {self.value} is not finite")


@dataclass(frozen=True)
class Metric:
    """A registered metric: its spec and ``compute(ctx) -> float | Measured``. A set metric
    made by :func:`set_metric` also keeps its two parts, ``sets(ctx)`` and ``statistic(sets)``,
    so resamples of identities slice features instead of building contexts."""

    spec: MetricSpec
    compute: Callable[[EvalContext], float | Measured]
    sets: Callable[[EvalContext], FeatureSets] | None = None
    statistic: Callable[[FeatureSets], float | Measured] | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def description(self) -> str:
        return self.spec.description

    def measure(self, ctx: EvalContext) -> MetricValue:
        """The value, or the reason from :class:`MetricUnavailable` (other errors propagate)."""
        try:
            result = self.compute(ctx)
        except MetricUnavailable as why:
            return MetricValue(self.name, None, str(why))
        if isinstance(result, Measured):
            return MetricValue(self.name, float(result.value), detail=dict(result.detail))
        return MetricValue(self.name, float(result))

    def value(self, ctx: EvalContext) -> float:
        """The bare value on ``ctx`` (:class:`MetricUnavailable` propagates)."""
        result = self.compute(ctx)
        return float(result.value if isinstance(result, Measured) else result)


Compute = Callable[["EvalContext"], "float | Measured"]


def metric(name: str, direction: Direction, description: str, needs: tuple[Need, ...], *,
           pooling: Pooling = "images") -> Callable[[Compute], Metric]:
    """Decorator: turn ``compute(ctx) -> float | Measured`` into a :class:`Metric` registered
    in METRICS."""

    def register(compute: Compute) -> Metric:
        built = Metric(MetricSpec(name, direction, description, needs, pooling), compute)
        METRICS.add(name, built)
        return built

    return register


def set_metric(name: str, direction: Direction, description: str, needs: tuple[Need, ...], *,
               sets: Callable[[EvalContext], FeatureSets]
               ) -> Callable[[Callable[[FeatureSets], float | Measured]], Metric]:
    """Decorator: register ``statistic(sets(ctx))`` as a ``pooling="set"`` metric."""

    def register(statistic: Callable[[FeatureSets], float | Measured]) -> Metric:
        built = Metric(MetricSpec(name, direction, description, needs, "set"),
                       lambda ctx: statistic(sets(ctx)), sets, statistic)
        METRICS.add(name, built)
        return built

    return register
