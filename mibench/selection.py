"""The protocol's ``selected`` set: each identity's best sample, chosen with only what the
attack's access allows (scores where available, else top-1 labels). Attacks with their own
selection (GMI's best restart by target logit, PPA's augmented confidence) override
``Attack.select``; these helpers are shared by all of them."""

from __future__ import annotations

import torch

from mibench.access import TargetView


def best_per_identity(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Index of the highest-scoring sample of each identity, identities in first-seen order."""
    order = []
    for label in dict.fromkeys(labels.tolist()):
        members = torch.nonzero(labels == label).flatten()
        order.append(members[scores[members].argmax()])
    return torch.stack(order)


def label_confidence(view: TargetView, images: torch.Tensor, labels: torch.Tensor,
                     batch_size: int = 256) -> torch.Tensor:
    """Target probability of each sample's intended identity (score access suffices)."""
    out = []
    for start in range(0, len(images), batch_size):
        chunk = slice(start, start + batch_size)
        probs = view.probs(images[chunk])
        out.append(probs.gather(1, labels[chunk, None].to(probs.device)).squeeze(1).cpu())
    return torch.cat(out)


def label_hits(view: TargetView, images: torch.Tensor, labels: torch.Tensor,
               batch_size: int = 256) -> torch.Tensor:
    """1 where the target's top-1 label is the intended identity, else 0 (label-only access)."""
    out = []
    for start in range(0, len(images), batch_size):
        chunk = slice(start, start + batch_size)
        out.append((view.labels(images[chunk]).cpu() == labels[chunk].cpu()).float())
    return torch.cat(out)
