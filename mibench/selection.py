"""The protocol's ``selected`` set: each identity's best sample, chosen with only what the
attack's access allows (scores where available, else top-1 labels). Attacks with their own
selection (GMI's best restart by target logit, PPA's augmented confidence) override
``Attack.select``; these helpers are shared by all of them."""

from __future__ import annotations

from typing import Callable

import torch

from mibench.access import TargetView


def best_per_identity(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Index of the highest-scoring sample of each identity, identities in first-seen order
    (on the CPU, wherever ``scores`` and ``labels`` live)."""
    scores, labels = scores.cpu(), labels.cpu()
    order = []
    for label in dict.fromkeys(labels.tolist()):
        members = torch.nonzero(labels == label).flatten()
        order.append(members[scores[members].argmax()])
    return torch.stack(order)


def top_k_per_identity(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """PPA's initial selection: ``scores`` is candidates × classes; the k entries of ``labels``
    equal to y get y's k best candidates (distinct, best first). Returns candidate indices
    (on the CPU; ``labels`` may be on any device)."""
    labels = labels.cpu()
    picks = torch.empty(len(labels), dtype=torch.long)
    for label in dict.fromkeys(labels.tolist()):
        members = torch.nonzero(labels == label).flatten()
        if len(members) > len(scores):
            raise ValueError(f"{len(members)} samples of identity {label} need at least as "
                             f"many candidates; the search has {len(scores)}")
        picks[members] = scores[:, label].topk(len(members)).indices.cpu()
    return picks


def _per_sample(score: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], view: TargetView,
                images: torch.Tensor, labels: torch.Tensor, batch_size: int) -> torch.Tensor:
    """``score(images, labels)`` batch by batch (queries attributed to each batch's labels),
    concatenated on the CPU."""
    out = []
    for i in range(0, len(images), batch_size):
        batch = labels[i:i + batch_size]
        with view.ledger.scope(batch):
            out.append(score(images[i:i + batch_size], batch).cpu())
    return torch.cat(out)


def label_logit(view: TargetView, images: torch.Tensor, labels: torch.Tensor,
                batch_size: int = 256) -> torch.Tensor:
    """Target logit of each sample's intended identity (GMI's selection score), no autograd."""

    def score(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            logits = view.logits(x)
        return logits.gather(1, y[:, None].to(logits.device)).squeeze(1)

    return _per_sample(score, view, images, labels, batch_size)


def label_confidence(view: TargetView, images: torch.Tensor, labels: torch.Tensor,
                     batch_size: int = 256) -> torch.Tensor:
    """Target probability of each sample's intended identity (score access suffices)."""

    def score(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        probs = view.probs(x)
        return probs.gather(1, y[:, None].to(probs.device)).squeeze(1)

    return _per_sample(score, view, images, labels, batch_size)


def label_hits(view: TargetView, images: torch.Tensor, labels: torch.Tensor,
               batch_size: int = 256) -> torch.Tensor:
    """1 where the target's top-1 label is the intended identity, else 0 (label-only access)."""

    def score(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        predicted = view.labels(x)
        return (predicted == y.to(predicted.device)).float()

    return _per_sample(score, view, images, labels, batch_size)


def augmented_confidence(view: TargetView, images: torch.Tensor, labels: torch.Tensor,
                         augment: Callable[[torch.Tensor], torch.Tensor], draws: int,
                         batch_size: int = 256) -> torch.Tensor:
    """Target probability of each sample's identity, averaged over ``draws`` augmented copies
    (PPA's final selection: 100 random crops and flips)."""

    def score(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        copies = torch.cat([augment(x) for _ in range(draws)])
        probs = view.probs(copies).view(draws, len(x), -1)
        return probs.gather(2, y.to(probs.device)[None, :, None].expand(draws, -1, 1)).mean(0)[:, 0]

    return _per_sample(score, view, images, labels, max(1, batch_size // draws))
