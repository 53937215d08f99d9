"""Per-class precision, recall, density and coverage in evaluation-model features.

Definitions of Naeem et al., "Reliable Fidelity and Diversity Metrics for Generative Models"
(ICML 2020, eqs. 1-4; the ``prdc`` package), with k-nearest-neighbour balls of radius the
distance to the k-th nearest *other* point of the same set (k = :data:`NEAREST_K` = 3, the MIA
toolbox's value):

* precision: fraction of generated points inside some real ball;
* recall: fraction of real points inside some generated ball (needs > k generated points);
* density: (1/k) × the number of real balls containing a generated point, averaged over them;
* coverage: fraction of real points whose ball holds at least one generated point.

Balls are open (strict ``<``, as in ``prdc``). As the MIA toolbox does, each is computed per
attacked identity, real = that identity's private-train images and generated = the images meant
to show it, and the metric is the unweighted mean over identities (``pooling="identities"``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mibench.metrics.base import MetricUnavailable, Need, metric
from mibench.metrics.context import EvalContext

NEAREST_K = 3


@dataclass(frozen=True)
class PRDC:
    precision: float
    recall: float | None    # None: too few generated points for their k-NN balls
    density: float
    coverage: float


def distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Exact pairwise Euclidean distances (|a|×|b|) in float64."""
    return torch.cdist(a.double(), b.double(), compute_mode="donot_use_mm_for_euclid_dist")


def knn_radii(points: torch.Tensor, k: int) -> torch.Tensor:
    """Distance of each point to its k-th nearest other point of the same set."""
    return distances(points, points).sort(dim=1).values[:, k]


def prdc(real: torch.Tensor, fake: torch.Tensor, k: int = NEAREST_K) -> PRDC:
    """PRDC of ``fake`` against ``real`` feature sets (rows are samples)."""
    if real.shape[0] <= k:
        raise ValueError(f"PRDC with k={k} needs more than {k} real points, got {real.shape[0]}")
    real_radii = knn_radii(real, k)
    between = distances(real, fake)                     # real × fake
    inside = between < real_radii[:, None]
    recall = None
    if fake.shape[0] > k:
        recall = (between < knn_radii(fake, k)[None, :]).any(dim=1).double().mean().item()
    return PRDC(precision=inside.any(dim=0).double().mean().item(), recall=recall,
                density=inside.sum(dim=0).double().mean().item() / k,
                coverage=(between.min(dim=1).values < real_radii).double().mean().item())


def per_class(ctx: EvalContext) -> list[PRDC]:
    """:func:`prdc` of each attacked identity's generated images against its private images."""
    reference = ctx.private.eval_features()
    out = []
    for label, index in ctx.by_identity():
        real = reference[ctx.private.indices_of(label).to(reference.device)]
        if real.shape[0] <= NEAREST_K:
            raise MetricUnavailable(f"PRDC (k={NEAREST_K}) needs more than {NEAREST_K} "
                                    f"private-train images per identity; identity {label} has "
                                    f"{real.shape[0]}")
        out.append(prdc(real, ctx.eval_features[index]))
    return out


def class_mean(ctx: EvalContext, field: str) -> float:
    values = [getattr(p, field) for p in per_class(ctx)]
    if any(v is None for v in values):
        raise MetricUnavailable(f"per-class {field} (k={NEAREST_K}) needs more than "
                                f"{NEAREST_K} generated images per identity")
    return sum(values) / len(values)


NEEDS: tuple[Need, ...] = ("eval_model", "private_features")


@metric("precision", "higher", "Per-class PRDC precision (k=3, eval features): generated images "
        "inside the private images' k-NN balls", needs=NEEDS, pooling="identities")
def precision(ctx: EvalContext) -> float:
    return class_mean(ctx, "precision")


@metric("recall", "higher", "Per-class PRDC recall (k=3, eval features): private images inside "
        "the generated images' k-NN balls", needs=NEEDS, pooling="identities")
def recall(ctx: EvalContext) -> float:
    return class_mean(ctx, "recall")


@metric("density", "higher", "Per-class PRDC density (k=3, eval features): private k-NN balls "
        "holding each generated image, over k", needs=NEEDS, pooling="identities")
def density(ctx: EvalContext) -> float:
    return class_mean(ctx, "density")


@metric("coverage", "higher", "Per-class PRDC coverage (k=3, eval features): private images "
        "whose k-NN ball holds a generated image", needs=NEEDS, pooling="identities")
def coverage(ctx: EvalContext) -> float:
    return class_mean(ctx, "coverage")
