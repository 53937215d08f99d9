"""The protocol's ``selected`` set: each identity's best sample, chosen with only what the
attack's access allows (scores where available, else top-1 labels). Attacks with their own
selection (GMI's best restart by target logit, PPA's augmented confidence) override
``Attack.select``; these helpers are shared by all of them."""

from __future__ import annotations

from typing import Callable

import torch

from mibench.access import TargetView


def best_per_identity(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Index of the highest-scoring sample of each identity, identities in first-seen order."""
    order = []
    for label in dict.fromkeys(labels.tolist()):
        members = torch.nonzero(labels == label).flatten()
        order.append(members[scores[members].argmax()])
    return torch.stack(order)


def _per_sample(score: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                images: torch.Tensor, labels: torch.Tensor, batch_size: int) -> torch.Tensor:
    """``score(images, labels)`` batch by batch, concatenated on the CPU."""
    return torch.cat([score(images[i:i + batch_size], labels[i:i + batch_size]).cpu()
                      for i in range(0, len(images), batch_size)])


def label_logit(view: TargetView, images: torch.Tensor, labels: torch.Tensor,
                batch_size: int = 256) -> torch.Tensor:
    """Target logit of each sample's intended identity (GMI's selection score), no autograd."""

    def score(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            logits = view.logits(x)
        return logits.gather(1, y[:, None].to(logits.device)).squeeze(1)

    return _per_sample(score, images, labels, batch_size)


def label_confidence(view: TargetView, images: torch.Tensor, labels: torch.Tensor,
                     batch_size: int = 256) -> torch.Tensor:
    """Target probability of each sample's intended identity (score access suffices)."""

    def score(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        probs = view.probs(x)
        return probs.gather(1, y[:, None].to(probs.device)).squeeze(1)

    return _per_sample(score, images, labels, batch_size)


def label_hits(view: TargetView, images: torch.Tensor, labels: torch.Tensor,
               batch_size: int = 256) -> torch.Tensor:
    """1 where the target's top-1 label is the intended identity, else 0 (label-only access)."""

    def score(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        predicted = view.labels(x)
        return (predicted == y.to(predicted.device)).float()

    return _per_sample(score, images, labels, batch_size)
