"""Batched application of a function over many images: one definition for the metrics and the
attacks (which may not import the metrics package, design.md §1)."""

from __future__ import annotations

from typing import Callable

import torch


def in_batches(fn: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor,
               device: torch.device, batch_size: int) -> torch.Tensor:
    """``fn`` over ``images`` in batches moved to ``device``, concatenated (on ``device``)."""
    return torch.cat([fn(images[i:i + batch_size].to(device))
                      for i in range(0, images.shape[0], batch_size)])
