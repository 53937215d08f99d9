"""What every architecture provides: an embedding network in its published state-dict layout.

A :class:`Backbone` maps *preprocessed* images (already resized and normalised by the
:class:`~mibench.target.Target` that owns it) to features, and optionally carries a closed-set
linear classifier under the attribute name its published checkpoints use (``head_key``), so that
``backbone.state_dict()`` has exactly the published key names and real checkpoints load strictly.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import nn


def scaled(channels: int, width: float) -> int:
    """Channel count under a width multiplier (at least 1; exact at ``width == 1``)."""
    return max(1, int(round(channels * width)))


def halved(size: int, times: int) -> int:
    """Spatial side after ``times`` stride-2 stages with 'same' padding (ceil division)."""
    for _ in range(times):
        size = math.ceil(size / 2)
    return size


class Backbone(nn.Module):
    """Base class: subclasses build their layers and implement :meth:`embed`."""

    head_key: ClassVar[str]

    def __init__(self, feature_dim: int, num_classes: int | None) -> None:
        super().__init__()
        self.feature_dim = feature_dim
        self.num_classes = num_classes

    def add_head(self) -> None:
        """Create the closed-set classifier under its published name (call after the layers)."""
        if self.num_classes is not None:
            self.add_module(self.head_key, nn.Linear(self.feature_dim, self.num_classes))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Features (N×feature_dim) of preprocessed images."""
        raise NotImplementedError

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """Logits of the closed-set head."""
        if self.num_classes is None:
            raise RuntimeError(f"{type(self).__name__} was built without a classifier head")
        head: nn.Module = getattr(self, self.head_key)
        return head(features)
