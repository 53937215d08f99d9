"""Pseudo-labelling the aux split by the target (PLG-MI, Diff-MI, UAMI, KEDMI; attacks.md
§4.2, §5.2, §7.2).

Aux images carry no private labels, so these attacks ask the target which private identity each
aux image looks like and train a class-conditional prior on the answers. Both queries run
outside any identity scope, so the ledger books them under ``prepare`` (one forward query per
aux image).
"""

from __future__ import annotations

from typing import Callable

import torch

from mibench.access import TargetView
from mibench.attack import FORWARD_BATCH
from mibench.batching import in_batches


def _batched(query: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor,
             batch_size: int) -> torch.Tensor:
    """``query`` on [0, 1] batches of the uint8 ``images``, concatenated on the CPU."""
    return in_batches(lambda batch: query(batch.float().div(255)).cpu(), images, images.device,
                      batch_size)


def top_n_pseudo_labels(view: TargetView, images: torch.Tensor, n: int,
                        batch_size: int = FORWARD_BATCH) -> tuple[torch.Tensor, torch.Tensor]:
    """PLG-MI's top-n selection (``top_n_selection.py``): for each class c, the ``n`` uint8 aux
    ``images`` with the highest softmax probability of c. An image may serve several classes.
    Needs score access. Returns (indices into ``images``, their pseudo-labels), class-major."""
    probs = _batched(view.probs, images, batch_size)
    n = min(n, len(images))
    indices = probs.topk(n, dim=0).indices.T.reshape(-1)
    labels = torch.arange(probs.shape[1]).repeat_interleave(n)
    return indices, labels


def top1_pseudo_labels(view: TargetView, images: torch.Tensor,
                       batch_size: int = FORWARD_BATCH) -> torch.Tensor:
    """UAMI's labelling: the target's top-1 answer for every uint8 aux image (label-only)."""
    return _batched(view.labels, images, batch_size)


def soft_labels(view: TargetView, images: torch.Tensor,
                batch_size: int = FORWARD_BATCH) -> torch.Tensor:
    """KEDMI's knowledge from the target: its class probabilities of every uint8 aux image
    (score access; one forward query per image)."""
    return _batched(view.probs, images, batch_size)


def target_outputs(view: TargetView, images: torch.Tensor, batch_size: int = FORWARD_BATCH
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """The white-box target's (logits, features) of every uint8 aux image, without gradients
    (LOMMA's distillation targets and feature anchor; one forward query per image)."""
    with torch.no_grad():
        both = _batched(lambda x: torch.cat(view(x), dim=1), images, batch_size)
    return both[:, :view.num_classes], both[:, view.num_classes:]
