"""95 % intervals of a cell's metrics: resampling the attacked identities (issue 19.1).

The attacked identities are the sampling unit: a cell's images of one identity are not
independent draws, the identities are. How a metric is resampled follows its spec's
``pooling`` (:mod:`mibench.metrics.base`):

* ``images`` and ``identities`` (accuracies, k-NN distances, LPIPS, PRDC): the metric of each
  identity's images alone, then a *percentile bootstrap* (Efron & Tibshirani 1993, §13.3):
  :attr:`IntervalConfig.replicates` resamples of the identities with replacement, each giving
  the (image-count weighted, or plain) mean of the drawn identities' values.
* ``set`` (FID, KID): resampling with replacement duplicates images, which moves FID up
  (duplicates shrink the covariance), so the bootstrap distribution is not centred on the value.
  Instead a *half-sample* scheme (the delete-d jackknife with d = n/2, Shao & Wu 1989):
  :attr:`IntervalConfig.set_replicates` subsets of m = ⌊n/2⌋ identities *without* replacement,
  the metric recomputed on each; their central 95 % spread, scaled by √(m(n-1) / (n(n-m)))
  (the ratio of the full sample's to a without-replacement half-sample's standard error for a
  mean), is put *around the full-sample value*, so the interval always contains it and the
  upward small-sample bias of FID on half the identities does not shift it.

Resampling indices depend only on (seed, identities, replicates), so the seeds of a cell
(``--seeds``) resample the same identities in the same order: :func:`combine` averages their
replicates elementwise, the bootstrap of the seed-averaged metric with identities as clusters
(an identity's values under different seeds are correlated, so seeds are not pooled as if
independent). The seed, method and counts are stored with each interval and stated in reports.
"""

from __future__ import annotations

import json
import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch

from mibench.config import Config, param
from mibench.metrics.base import Measured, Metric, MetricUnavailable, MetricValue
from mibench.metrics.context import EvalContext

PERCENTILE = "percentile"
HALF_SAMPLE = "half-sample"
METHODS = {PERCENTILE: "percentile bootstrap over identities",
           HALF_SAMPLE: "half-sample (delete-n/2 jackknife) over identities, centred"}


@dataclass
class IntervalConfig(Config):
    """How intervals are computed (the paper reports none: every value here is ours)."""

    level: float = param(0.95, "coverage of the intervals", gt=0.0, lt=1.0, source="ours")
    replicates: int = param(1000, "bootstrap resamples of identities (per-identity metrics)",
                            ge=2, source="ours")
    set_replicates: int = param(200, "half-samples of identities (FID, KID)", ge=2,
                                source="ours")
    seed: int = param(0, "seed of the resampling indices (the same for every cell and seed)",
                      ge=0, source="ours")


@dataclass(frozen=True)
class Interval:
    """The interval of one metric on one image set, or the ``reason`` there is none.

    ``replicates`` are the resampled values (empty when there is no interval); ``detail``
    carries the metric's own :attr:`MetricValue.detail` (sample counts, KID's std)."""

    name: str
    low: float | None
    high: float | None
    method: str
    identities: int
    seed: int
    replicates: np.ndarray = field(default_factory=lambda: np.zeros(0))
    reason: str | None = None
    detail: Mapping[str, float] = field(default_factory=dict)

    @property
    def half_width(self) -> float | None:
        return None if self.low is None or self.high is None else (self.high - self.low) / 2


def resample_index(n: int, replicates: int, seed: int) -> torch.Tensor:
    """replicates × n identity indices drawn with replacement (seeded)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(n, (replicates, n), generator=generator)


def half_sample_index(n: int, replicates: int, seed: int) -> torch.Tensor:
    """replicates × ⌊n/2⌋ identity indices, each row without replacement (seeded)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(replicates, n, generator=generator).argsort(dim=1)[:, :n // 2]


def percentile_interval(replicates: torch.Tensor, level: float) -> tuple[float, float]:
    tail = (1 - level) / 2
    low, high = torch.quantile(replicates.double(), torch.tensor([tail, 1 - tail],
                                                                 dtype=torch.float64))
    return low.item(), high.item()


def half_sample_scale(n: int) -> float:
    """√(m(n-1) / (n(n-m))), m = ⌊n/2⌋: a without-replacement m-subset mean has variance
    σ²(n-m)/(m(n-1)); the full-sample mean σ²/n."""
    m = n // 2
    return math.sqrt(m * (n - 1) / (n * (n - m)))


def centred_interval(point: float, replicates: torch.Tensor, n: int,
                     level: float) -> tuple[float, float]:
    """``point`` ± the scaled half-width of the replicates' central ``level`` range."""
    low, high = percentile_interval(replicates, level)
    half = half_sample_scale(n) * (high - low) / 2
    return point - half, point + half


def identity_values(metric: Metric, ctx: EvalContext) -> tuple[torch.Tensor, torch.Tensor]:
    """The metric on each attacked identity's images alone, and their image counts."""
    values = [metric.value(subset) for subset, _ in ctx.identity_subsets]
    counts = [float(count) for _, count in ctx.identity_subsets]
    return torch.tensor(values, dtype=torch.float64), torch.tensor(counts, dtype=torch.float64)


def set_replicates(metric: Metric, ctx: EvalContext, index: torch.Tensor) -> torch.Tensor:
    """The metric recomputed on the images of each row's identities: from its feature sets
    sliced by identity when it has them (:func:`~mibench.metrics.base.set_metric`), else on a
    sub-context."""
    identities = torch.tensor(ctx.identities)
    if metric.sets is not None and metric.statistic is not None:
        sets, statistic = metric.sets(ctx), metric.statistic
        results = [statistic(sets.of(identities[row])) for row in index]
        return torch.tensor([float(r.value if isinstance(r, Measured) else r) for r in results],
                            dtype=torch.float64)
    labels = ctx.labels.cpu()
    return torch.tensor([metric.value(ctx.subset(torch.isin(labels, identities[row])))
                         for row in index], dtype=torch.float64)


@contextmanager
def one_thread() -> Iterator[None]:
    """Run with one torch CPU thread: replicates are many small matrix operations, for which
    handing work between threads costs more than it saves (a 4×2048 FID took 68 ms on two
    threads of a loaded 2-core machine and 1.3 ms on one)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def interval(metric: Metric, ctx: EvalContext, measured: MetricValue,
             config: IntervalConfig | None = None) -> Interval:
    """The interval of ``metric`` whose value on ``ctx`` is ``measured`` (which has a value)."""
    with one_thread():
        return _interval(metric, ctx, measured, config or IntervalConfig())


def _interval(metric: Metric, ctx: EvalContext, measured: MetricValue,
              config: IntervalConfig) -> Interval:
    pooling = metric.spec.pooling
    method = HALF_SAMPLE if pooling == "set" else PERCENTILE
    n = len(ctx.identities)
    base = dict(name=metric.name, method=method, identities=n, seed=config.seed,
                detail=measured.detail)
    if n < 2:
        return Interval(low=None, high=None, reason="one attacked identity: nothing to "
                        "resample", **base)
    try:
        if pooling == "set":
            reps = set_replicates(metric, ctx, half_sample_index(n, config.set_replicates,
                                                                  config.seed))
            low, high = centred_interval(float(measured.value), reps, n, config.level)
        else:
            values, counts = identity_values(metric, ctx)
            weights = counts if pooling == "images" else torch.ones_like(counts)
            index = resample_index(n, config.replicates, config.seed)
            reps = (values[index] * weights[index]).sum(1) / weights[index].sum(1)
            low, high = percentile_interval(reps, config.level)
    except MetricUnavailable as why:
        return Interval(low=None, high=None, reason=f"not on subsets of identities: {why}",
                        **base)
    return Interval(low=low, high=high, replicates=reps.numpy(), **base)


def combine(points: Sequence[float], intervals: Sequence[Interval],
            level: float = IntervalConfig().level) -> tuple[float, float] | None:
    """The interval of the mean over seeds of ``points`` from their seeds' ``intervals``:
    their replicates averaged elementwise (same identities drawn in each, see module doc);
    ``None`` when one is missing or they were not drawn alike."""
    if not intervals or len(points) != len(intervals) or any(
            i.low is None or len(i.replicates) == 0 for i in intervals):
        return None
    first = intervals[0]
    if any((i.method, i.identities, i.seed, len(i.replicates))
           != (first.method, first.identities, first.seed, len(first.replicates))
           for i in intervals):
        return None
    if len(intervals) == 1:
        return first.low, first.high  # type: ignore[return-value]
    reps = torch.from_numpy(np.mean([i.replicates for i in intervals], axis=0))
    if first.method == HALF_SAMPLE:
        return centred_interval(float(np.mean(points)), reps, first.identities, level)
    return percentile_interval(reps, level)


def to_row(subset: str, iv: Interval) -> tuple:
    """``iv`` as a row of the store's ``intervals`` table (``store.INTERVAL_COLUMNS``)."""
    return (subset, iv.name, iv.low, iv.high, iv.method, iv.identities, iv.seed,
            iv.replicates.astype(np.float32).tobytes(), iv.reason,
            json.dumps(dict(iv.detail)))


def from_row(row: Mapping[str, Any]) -> Interval:
    """An :class:`Interval` from a stored row (``Store.intervals``)."""
    return Interval(row["name"], row["low"], row["high"], row["method"], row["identities"],
                    row["boot_seed"], np.frombuffer(row["replicates"], dtype=np.float32)
                    .astype(np.float64), row["reason"], row["detail"])
