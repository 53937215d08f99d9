"""FGMIA's closed-set TransF / ScaleFT (:func:`transf`, :func:`scaleft`; not in the public
code, attacks.md §8.7–8.8) and the candidate readings of issue 18.6:

- :func:`within_class_covariance`: the pooled within-class covariance Σ_w of the labelled aux
  conditions. LDA's classifier rows are w_k = Σ_w⁻¹ m_k (+ const), so Σ_w·(w_k − w̄) = m_k − m̄
  holds exactly only with Σ_w; the total aux covariance Σ_w + Σ_between inflates the offset
  along the directions that separate identities.
- :func:`identity_radius`: ScaleFT's radius in standardised coordinates from the aux identity
  means, r = mean_k ‖(m_k − μ)/σ‖ (their Mahalanobis norm under ScaleFT's diagonal σ²), instead
  of √d, the norm of a single real feature, which lies ~√d standard deviations out along one
  direction.
- :func:`map_features`: the MAP feature of each class under a Gaussian feature prior,
  argmax_f log softmax(W f + b)_k − ½ (f − μ)ᵀ Σ⁻¹ (f − μ), by a few (Newton) steps on the
  head (no target queries).
- :func:`keep_best`: the official code draws 32 samples per identity and keeps the 16 whose
  target feature is most cosine-similar to the condition.

:class:`AuxIdentityStats` caches Σ_w and r per target and aux split (one forward query per aux
image, booked under ``prepare`` the first time), beside the prior, whose cache key they leave
alone.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from mibench.attack import AttackContext
from mibench.attacks.priors.cached import cached_module
from mibench.errors import ConfigError
from mibench.world import UNLABELLED

SCALEFT_MODES = ("moment", "radius", "norm", "none")


def transf(head: torch.Tensor, covariance: torch.Tensor | None = None) -> torch.Tensor:
    """TransF: each head row minus the mean row (C×d), times ``covariance`` if given. Without it
    row k maximises ℓ_k − mean_j ℓ_j per unit feature norm; with the classes' shared
    within-class covariance Σ_w it is the class-mean offset m_k − m̄ of an LDA model whose
    classifier is ``head`` (with another Σ, e.g. the total covariance, it is not)."""
    centred = head - head.mean(0, keepdim=True)
    return centred if covariance is None else centred @ covariance


def transf_directions(head: torch.Tensor, bias: torch.Tensor | None, mean: torch.Tensor,
                      covariance: torch.Tensor | None, *, enabled: bool, use_map: bool,
                      map_steps: int) -> torch.Tensor:
    """TransF's vector per identity under the chosen reading: the raw head rows (``enabled``
    off: ablation no-TransF), the MAP offsets f_k − μ (``use_map``; Σ = I where ``covariance``
    is None) or Σ·(w_k − w̄) (:func:`transf`)."""
    if not enabled:
        return head
    if use_map:
        sigma = torch.eye(head.shape[1], device=head.device) if covariance is None else covariance
        return map_features(head, bias, mean, sigma, map_steps) - mean
    return transf(head, covariance)


def scaleft(directions: torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
            mean_norm: float, mode: str, radius: float | None = None) -> torch.Tensor:
    """ScaleFT: map per-identity directions onto the distribution of real conditions
    (``radius``: the standardised radius of mode ``radius``)."""
    if mode == "none":
        return directions
    if mode == "norm":
        return mean_norm * F.normalize(directions, dim=1)
    if mode == "radius" and radius is None:
        raise ConfigError("ScaleFT radius needs the aux identity means' radius")
    return standardised_at(directions, mean, std,
                           math.sqrt(directions.shape[1]) if mode == "moment" else radius)


def _labelled(conditions: torch.Tensor, labels: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The labelled rows, their labels re-indexed 0..K−1, and the K class means."""
    keep = labels != UNLABELLED
    if int(keep.sum()) == 0:
        raise ConfigError("this TransF/ScaleFT reading needs identity labels on the aux split "
                          "(aux 'similar'); the chosen aux split has none")
    classes, index = labels[keep].unique(return_inverse=True)
    rows = conditions[keep].double()
    sums = torch.zeros(len(classes), rows.shape[1], dtype=rows.dtype, device=rows.device)
    sums.index_add_(0, index, rows)
    means = sums / torch.bincount(index, minlength=len(classes))[:, None]
    return rows, index, means


def within_class_covariance(conditions: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Σ_w = Σ_k Σ_{i ∈ k} (f_i − m_k)(f_i − m_k)ᵀ / (n − K) over the labelled rows."""
    rows, index, means = _labelled(conditions, labels)
    centred = rows - means[index]
    dof = max(len(rows) - len(means), 1)
    return (centred.t() @ centred / dof).to(conditions.dtype)


def identity_radius(conditions: torch.Tensor, labels: torch.Tensor, mean: torch.Tensor,
                    std: torch.Tensor) -> float:
    """r = mean over aux identities k of ‖(m_k − μ)/σ‖."""
    _, _, means = _labelled(conditions, labels)
    return float(((means - mean.double()) / std.double()).norm(dim=1).mean())


def map_features(weight: torch.Tensor, bias: torch.Tensor | None, mean: torch.Tensor,
                 covariance: torch.Tensor, steps: int, chunk: int = 64) -> torch.Tensor:
    """Per class k (rows, C×d) the maximiser of the concave
    J_k(f) = log softmax(W f + b)_k − ½ (f − μ)ᵀ Σ⁻¹ (f − μ): ``steps`` Newton steps from f = μ,
    each halved until it does not lower J_k. ∇J_k = Wᵀ(e_k − p) − Σ⁻¹(f − μ), the Hessian
    −(Σ⁻¹ + Wᵀ(diag p − p pᵀ)W), p = softmax(W f + b); at the optimum
    f = μ + Σ Wᵀ(e_k − p). Σ⁻¹ is the pseudo-inverse; float64, ``chunk`` classes at a time."""
    dtype, classes = weight.dtype, weight.shape[0]
    weight, mean = weight.double(), mean.double()
    bias = torch.zeros(classes, device=weight.device) if bias is None else bias
    bias = bias.double()
    precision = torch.linalg.pinv(covariance.double())
    onehot = torch.eye(classes, device=weight.device, dtype=weight.dtype)

    def objective(f: torch.Tensor, own: torch.Tensor) -> torch.Tensor:
        offset = f - mean
        log_p = torch.log_softmax(f @ weight.t() + bias, dim=1).gather(1, own[:, None])[:, 0]
        return log_p - 0.5 * ((offset @ precision) * offset).sum(1)

    out = []
    for start in range(0, classes, chunk):
        own = torch.arange(start, min(start + chunk, classes), device=weight.device)
        f = mean.expand(len(own), -1).clone()
        for _ in range(steps):
            p = torch.softmax(f @ weight.t() + bias, dim=1)
            grad = (onehot[own] - p) @ weight - (f - mean) @ precision
            mixed = p @ weight
            curvature = (torch.einsum("nc,cd,ce->nde", p, weight, weight)
                         - mixed[:, :, None] * mixed[:, None, :])
            step = torch.linalg.solve(precision + curvature, grad)
            f = _backtrack(f, step, own, objective)
        out.append(f)
    return torch.cat(out).to(dtype)


def _backtrack(f: torch.Tensor, step: torch.Tensor, own: torch.Tensor,
               objective: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
               halvings: int = 30) -> torch.Tensor:
    """f + t·step per row with the largest t ∈ {1, ½, ¼, …} that does not lower the objective
    (f itself where none does)."""
    current = objective(f, own)
    scale = torch.ones(len(f), 1, dtype=f.dtype, device=f.device)
    for _ in range(halvings):
        ok = objective(f + scale * step, own) >= current
        if bool(ok.all()):
            break
        scale = torch.where(ok[:, None], scale, scale / 2)
    ok = objective(f + scale * step, own) >= current
    return torch.where(ok[:, None], f + scale * step, f)


def keep_best(scores: torch.Tensor, drawn: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Indices into the draws such that ``drawn[index] == labels``: each identity's entries of
    ``labels`` get its best-scoring draws, best first."""
    scores, drawn, labels = scores.cpu(), drawn.cpu(), labels.cpu()
    index = torch.empty(len(labels), dtype=torch.long)
    for label in labels.unique().tolist():
        slots = torch.nonzero(labels == label).flatten()
        members = torch.nonzero(drawn == label).flatten()
        if len(members) < len(slots):
            raise ConfigError(f"identity {label}: {len(members)} draws for {len(slots)} samples")
        best = members[scores[members].argsort(descending=True, stable=True)]
        index[slots] = best[:len(slots)]
    return index


class AuxIdentityStats(nn.Module):
    """Σ_w and r of the target's aux conditions (:func:`within_class_covariance`,
    :func:`identity_radius`)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("within_covariance", torch.eye(dim))
        self.register_buffer("radius", torch.zeros(()))


def aux_identity_stats(ctx: AttackContext, dim: int, settings: dict,
                       conditions: Callable[[], torch.Tensor], mean: torch.Tensor,
                       std: torch.Tensor) -> AuxIdentityStats:
    """The cached :class:`AuxIdentityStats` of ``conditions()`` (the aux split's, in its
    order) for ``settings`` (what the conditions depend on)."""

    def fit(stats: AuxIdentityStats) -> None:
        values, labels = conditions(), ctx.aux.labels.to(mean.device)
        stats.within_covariance.copy_(within_class_covariance(values, labels))
        stats.radius.fill_(identity_radius(values, labels, mean, std))

    return cached_module(ctx, "fgmia-aux-stats", settings,
                         lambda: AuxIdentityStats(dim), fit).requires_grad_(False)


def standardised_at(directions: torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
                    radius: float) -> torch.Tensor:
    """μ + σ ⊙ radius·(d/σ)/‖d/σ‖: the ScaleFT point at ``radius`` in standardised units."""
    return mean + std * F.normalize(directions / std, dim=1) * radius
