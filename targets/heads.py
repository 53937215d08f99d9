"""Training heads and losses for the open-set targets.

* :class:`ArcFaceHead` — additive angular margin, s·cos(θ_y + m) (Deng et al., CVPR 2019), with
  the published fallback cos θ − m·sin m when θ_y + m > π (insightface ``CombinedMarginLoss``);
* :class:`CosFaceHead` — additive cosine margin, s·(cos θ_y − m) (Wang et al., CVPR 2018);
* :func:`triplet_loss` — FaceNet's triplet loss on L2-normalised embeddings with squared
  distances (Schroff et al., CVPR 2015), mined batch-hard within P×K batches (Hermans et al.,
  "In Defense of the Triplet Loss", 2017).

Closed-set targets need no extra head: their linear classifier lives in the backbone under its
published name and trains with plain cross-entropy.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class MarginHead(nn.Module):
    """Cosine classifier over the training identities; subclasses put a margin on the target."""

    def __init__(self, feature_dim: int, num_classes: int, *, scale: float = 64.0,
                 margin: float = 0.0) -> None:
        super().__init__()
        self.scale = scale
        self.margin = margin
        self.weight = nn.Parameter(torch.randn(num_classes, feature_dim) * 0.01)

    def cosine(self, features: Tensor) -> Tensor:
        """cos θ between each feature and each class centre (N×C)."""
        return F.normalize(features, dim=1) @ F.normalize(self.weight, dim=1).t()

    def target_cosine(self, cos_target: Tensor) -> Tensor:
        """The margin-adjusted cosine of the true class."""
        raise NotImplementedError

    def forward(self, features: Tensor, labels: Tensor | None = None) -> Tensor:
        """Scaled logits; with ``labels`` the true class gets the margin (training)."""
        cos = self.cosine(features).clamp(-1.0, 1.0)
        if labels is None:
            return self.scale * cos
        index = labels.view(-1, 1)
        adjusted = self.target_cosine(cos.gather(1, index))
        return self.scale * cos.scatter(1, index, adjusted)


class ArcFaceHead(MarginHead):
    """ArcFace: cos(θ + m), or cos θ − m·sin m where θ + m would pass π (s=64, m=0.5)."""

    def __init__(self, feature_dim: int, num_classes: int, *, scale: float = 64.0,
                 margin: float = 0.5) -> None:
        super().__init__(feature_dim, num_classes, scale=scale, margin=margin)

    def target_cosine(self, cos_target: Tensor) -> Tensor:
        m = self.margin
        sin_target = torch.sqrt((1.0 - cos_target * cos_target).clamp_min(1e-9))
        shifted = cos_target * math.cos(m) - sin_target * math.sin(m)
        return torch.where(cos_target > math.cos(math.pi - m), shifted,
                           cos_target - m * math.sin(m))


class CosFaceHead(MarginHead):
    """CosFace / large-margin cosine loss: cos θ − m (s=64, m=0.35)."""

    def __init__(self, feature_dim: int, num_classes: int, *, scale: float = 64.0,
                 margin: float = 0.35) -> None:
        super().__init__(feature_dim, num_classes, scale=scale, margin=margin)

    def target_cosine(self, cos_target: Tensor) -> Tensor:
        return cos_target - self.margin


def squared_distances(embeddings: Tensor) -> Tensor:
    """Pairwise squared Euclidean distances (N×N) of L2-normalised embeddings."""
    unit = F.normalize(embeddings, dim=1)
    return (2.0 - 2.0 * unit @ unit.t()).clamp_min(0.0)


def batch_hard_mining(distances: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """For each anchor: index of its farthest positive, of its nearest negative, and a mask of
    anchors that have both (Hermans et al. 2017, "batch hard")."""
    same = labels.view(-1, 1) == labels.view(1, -1)
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    positive = same & ~eye
    negative = ~same
    inf = torch.finfo(distances.dtype).max
    hardest_positive = distances.masked_fill(~positive, -inf).argmax(dim=1)
    hardest_negative = distances.masked_fill(~negative, inf).argmin(dim=1)
    valid = positive.any(dim=1) & negative.any(dim=1)
    return hardest_positive, hardest_negative, valid


def triplet_loss(embeddings: Tensor, labels: Tensor, margin: float = 0.2) -> Tensor:
    """Mean over valid anchors of max(0, d(a, p_hard) − d(a, n_hard) + margin)."""
    distances = squared_distances(embeddings)
    positive, negative, valid = batch_hard_mining(distances, labels)
    if not bool(valid.any()):
        raise ValueError("triplet loss needs a batch with ≥ 2 identities and ≥ 2 images of one "
                         "of them; sample P×K batches")
    rows = torch.arange(len(labels), device=labels.device)
    gap = distances[rows, positive] - distances[rows, negative] + margin
    return F.relu(gap[valid]).mean()
