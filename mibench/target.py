"""The target contract (design.md §2).

A target is an ``nn.Module`` whose ``forward(x)`` takes images in [0, 1] (N×3×H×W, any size) and
returns ``(logits, features)`` over the private identities. It resizes (antialiased) and
normalises its input itself. ``kind`` is ``closed`` (linear head over the private identities) or
``open`` (an embedding model; its logits are scaled cosines to a gallery of enrolled templates,
one per private identity).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

Kind = Literal["closed", "open"]


class Target(nn.Module):
    """Base class: subclasses implement :meth:`embed` (and, if closed-set, own a ``head``)."""

    kind: Kind = "closed"

    def __init__(self, *, num_classes: int, resolution: int, feature_dim: int,
                 mean: tuple[float, float, float] = (0.5, 0.5, 0.5),
                 std: tuple[float, float, float] = (0.5, 0.5, 0.5)) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.resolution = resolution
        self.feature_dim = feature_dim
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """[0,1] images of any size → the model's native resolution and normalisation."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"targets take N×3×H×W images in [0,1], got shape {tuple(x.shape)}")
        if x.shape[-2:] != (self.resolution, self.resolution):
            x = F.interpolate(x, size=(self.resolution, self.resolution), mode="bilinear",
                              align_corners=False, antialias=True)
        return (x - self.mean) / self.std

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Features of preprocessed images (N×feature_dim)."""
        raise NotImplementedError

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """Logits over the private identities from features."""
        raise NotImplementedError

    def linear_head(self) -> nn.Linear | None:
        """The linear layer that maps features to logits, when the classifier is one."""
        return None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.embed(self.preprocess(x))
        return self.classify(features), features


class OpenSetTarget(Target):
    """An embedding model with an enrolled gallery: logits = ``scale`` · cos(feature, template)."""

    kind: Kind = "open"

    def __init__(self, *, num_classes: int, resolution: int, feature_dim: int,
                 scale: float = 64.0, **kwargs: tuple[float, float, float]) -> None:
        super().__init__(num_classes=num_classes, resolution=resolution,
                         feature_dim=feature_dim, **kwargs)
        self.scale = scale
        self.register_buffer("gallery", torch.zeros(num_classes, feature_dim))

    def enrol(self, templates: torch.Tensor) -> None:
        """Set the gallery: one L2-normalised template per private identity."""
        if templates.shape != (self.num_classes, self.feature_dim):
            raise ValueError(f"gallery must be {self.num_classes}×{self.feature_dim}, "
                             f"got {tuple(templates.shape)}")
        self.gallery.copy_(F.normalize(templates, dim=1))

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        return self.scale * F.normalize(features, dim=1) @ self.gallery.t()
