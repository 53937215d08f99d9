"""Identity losses on target logits (attacks.md §A.2). Each returns one loss per sample."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Softmax cross-entropy (GMI)."""
    return F.cross_entropy(logits, labels, reduction="none")


def logit_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """−ℓ_y: the k = 0 case of the top-k margin."""
    return -logits.gather(1, labels[:, None]).squeeze(1)


def top_k_margin(logits: torch.Tensor, labels: torch.Tensor, k: int = 20) -> torch.Tensor:
    """−ℓ_y + mean of the k largest other logits (Diff-MI, k = 20)."""
    if k == 0:
        return logit_loss(logits, labels)
    others = logits.scatter(1, labels[:, None], float("-inf"))
    k = min(k, logits.shape[1] - 1)
    return logit_loss(logits, labels) + others.topk(k, dim=1).values.mean(dim=1)


def max_margin(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """−ℓ_y + max_{j≠y} ℓ_j (PLG-MI)."""
    return top_k_margin(logits, labels, k=1)


def poincare(logits: torch.Tensor, labels: torch.Tensor, xi: float = 1e-4) -> torch.Tensor:
    """Poincaré distance between u = ℓ/‖ℓ‖₁ and v = clip(onehot(y) − ξ, 0, 1) (PPA, IF-GMI)."""
    u = logits / logits.abs().sum(dim=1, keepdim=True)
    v = (F.one_hot(labels, logits.shape[1]).to(logits.dtype) - xi).clamp(0, 1)
    num = 2 * (u - v).pow(2).sum(dim=1)
    den = (1 - u.pow(2).sum(dim=1)) * (1 - v.pow(2).sum(dim=1))
    return torch.acosh(1 + num / den)


IDENTITY_LOSSES = {"ce": cross_entropy, "logit": logit_loss, "max_margin": max_margin,
                   "top_k_margin": top_k_margin, "poincare": poincare}
