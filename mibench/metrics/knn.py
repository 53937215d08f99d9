"""Identity distances in the evaluation model's feature space, against the same identity only.

Conventions (attacks.md §A.4), all averaged over every generated image (PLG-MI
``evaluation.calc_knn``; Diff-MI averages over successful images only, which the harness gets
by evaluating that subset):

* ``knn_l2``: **squared** L2 to the nearest private-train image *of the intended identity*
  (GMI/PLG-MI "KNN Dist"), never to the nearest image of any identity;
* ``knn_cos``: the maximum cosine similarity to those images (FGMIA's "KNN", but in the
  evaluation model's space);
* ``feat_dist``: squared L2 to the identity's centroid, the mean private-train feature of
  that identity (GMI ``calc_center``, Diff-MI ``calc_feat_dis``).

Distances are exact (no ``a² + b² - 2ab`` expansion, which can go negative).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from mibench.metrics.base import metric
from mibench.metrics.context import EvalContext


def squared_l2(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise squared Euclidean distances (|a|×|b|), computed without the matmul shortcut."""
    return torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist").square()


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise cosine similarities (|a|×|b|)."""
    return F.normalize(a, dim=1) @ F.normalize(b, dim=1).t()


Score = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def mean_same_identity(ctx: EvalContext, score: Score) -> float:
    """Mean over generated images of ``score(their features, their identity's private features)``.

    ``score`` maps (g×D generated, p×D private) features of one identity to g values.
    """
    reference = ctx.private.eval_features()
    total = torch.zeros((), dtype=torch.float64, device=ctx.device)
    for label, index in ctx.by_identity():
        private = reference[ctx.private.indices_of(label).to(reference.device)]
        total += score(ctx.eval_features[index], private).double().sum()
    return (total / ctx.labels.shape[0]).item()


def nearest_squared_l2(mine: torch.Tensor, private: torch.Tensor) -> torch.Tensor:
    return squared_l2(mine, private).min(dim=1).values


def best_cosine(mine: torch.Tensor, private: torch.Tensor) -> torch.Tensor:
    return cosine(mine, private).max(dim=1).values


def centroid_squared_l2(mine: torch.Tensor, private: torch.Tensor) -> torch.Tensor:
    return squared_l2(mine, private.mean(dim=0, keepdim=True)).squeeze(1)


@metric("knn_l2", "lower",
        "Squared L2 (eval features) to the nearest private-train image of the same identity",
        needs=("eval_model", "private_features"))
def knn_l2(ctx: EvalContext) -> float:
    return mean_same_identity(ctx, nearest_squared_l2)


@metric("knn_cos", "higher",
        "Max cosine similarity (eval features) to the private-train images of the same identity",
        needs=("eval_model", "private_features"))
def knn_cos(ctx: EvalContext) -> float:
    return mean_same_identity(ctx, best_cosine)


@metric("feat_dist", "lower",
        "Squared L2 (eval features) to the mean private-train feature of the same identity",
        needs=("eval_model", "private_features"))
def feat_dist(ctx: EvalContext) -> float:
    return mean_same_identity(ctx, centroid_squared_l2)
