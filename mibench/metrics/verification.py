"""Verification view of attack success (issue 19.6): would a face-verification system accept it?

The template-inversion literature's success attack rate (SAR, TAR@FAR): the target acts as a
verifier that accepts an image as identity k when the cosine of its embedding to k's template
exceeds a threshold τ, set so that the false-accept rate on impostor pairs is ``FAR`` = 1e-3.

- Templates: an open-set target's enrolled gallery (the run's ``run.enrolment``,
  targets/enrolment.py); a closed-set target's linear-head rows, the class directions of its
  penultimate features (a closed-set target without a linear head has no verification view:
  the metric is unavailable, with that reason).
- Impostor pairs: every private-test image against every *other* identity's template
  (N_test · (C − 1) pairs; 19,600 at ``mini``). The templates come from private-train, so no
  pair reuses a template's image. τ needs at least ⌈1/FAR⌉ = 1000 pairs; with fewer (``smoke``:
  112) the metric is unavailable and says so, never a threshold from too few pairs.
- ``sar_far1e-3``: the fraction of generated images whose cosine to their intended identity's
  template exceeds τ (a mean over images, bootstrapped over identities as Acc@1).
"""

from __future__ import annotations

import hashlib
import math

import torch
import torch.nn.functional as F

from mibench.metrics.base import MetricUnavailable, metric
from mibench.metrics.batching import logits_and_features
from mibench.metrics.context import EvalContext
from mibench.target import OpenSetTarget

FAR = 1e-3


def far_threshold(impostor: torch.Tensor, far: float = FAR) -> float:
    """The threshold τ whose false-accept rate (impostor scores > τ) is at most ``far``: the
    ⌊far·n⌋-th largest of the n impostor scores (0-based), so ⌊far·n⌋ of them lie above it."""
    n = impostor.numel()
    check_pairs(n, far)
    return float(impostor.flatten().sort(descending=True).values[math.floor(far * n)])


def check_pairs(n: int, far: float = FAR) -> None:
    """Refuse a threshold at ``far`` from fewer than ⌈1/far⌉ impostor pairs."""
    needed = math.ceil(1 / far)
    if n < needed:
        raise MetricUnavailable(f"FAR {far:g} needs at least {needed} impostor pairs, the "
                                f"private-test split gives {n}; use a larger preset")


def cosines(features: torch.Tensor, templates: torch.Tensor) -> torch.Tensor:
    """Cosine of every feature row to every template row (N×C)."""
    return F.normalize(features.float(), dim=1) @ F.normalize(templates.float(), dim=1).t()


def genuine_scores(features: torch.Tensor, labels: torch.Tensor,
                   templates: torch.Tensor) -> torch.Tensor:
    """Cosine of each feature row to the template of its own label (N)."""
    return cosines(features, templates).gather(1, labels.long().view(-1, 1)).flatten()


def impostor_scores(features: torch.Tensor, labels: torch.Tensor,
                    templates: torch.Tensor) -> torch.Tensor:
    """Cosines of each feature row to the templates of every other label (N·(C−1))."""
    scores = cosines(features, templates)
    own = F.one_hot(labels.long(), scores.shape[1]).bool()
    return scores[~own]


def target_templates(target: torch.nn.Module) -> torch.Tensor:
    """The verifier's templates: an open-set target's gallery, a closed-set one's head rows."""
    if isinstance(target, OpenSetTarget):
        return target.gallery.detach()
    head = target.linear_head()
    if head is None:
        raise MetricUnavailable("this closed-set target has no linear head, so no class "
                                "templates to verify against")
    return head.weight.detach()


def model_digest(model: torch.nn.Module) -> str:
    """SHA-256 of a model's state (parameters and buffers, gallery included)."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def verification_threshold(ctx: EvalContext) -> float:
    """τ at :data:`FAR` from the target's private-test impostor pairs, once per cell and, for
    the same target state (weights and gallery), once per private reference: every attack on
    one target shares it."""
    def compute() -> float:
        split = ctx.private.test_split
        if split is None:
            raise MetricUnavailable("no private-test split was given for the verification "
                                    "pairs")
        templates = target_templates(ctx.target)
        check_pairs(len(split) * (templates.shape[0] - 1))
        key = model_digest(ctx.target)
        if key not in ctx.private.thresholds:
            features = logits_and_features(ctx.target, split.float_images(), ctx.batch_size)[1]
            ctx.private.thresholds[key] = far_threshold(impostor_scores(
                features, split.labels.to(features.device), templates.to(features.device)))
        return ctx.private.thresholds[key]

    return ctx.shared("verification_threshold", compute)


@metric("sar_far1e-3", "higher", "Fraction of generated images the target accepts as their "
        "identity at its FAR=1e-3 threshold (private-test impostor pairs)", needs=("target",))
def sar_far1e3(ctx: EvalContext) -> float:
    threshold = verification_threshold(ctx)
    templates = target_templates(ctx.target).to(ctx.device)
    scores = genuine_scores(ctx.target_features, ctx.labels, templates)
    return (scores > threshold).float().mean().item()
