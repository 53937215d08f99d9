"""The private reference of a run: private-train images and features computed once.

Every anchor compares reconstructions with the *training* images of the target class
(anchors.md §1), so the reference is the ``private-train`` split. Its evaluation-model
features are computed on first use and reused by every metric and every cell of a run; other
features (Inception for FID) are cached per identity, so only attacked identities are embedded.
"""

from __future__ import annotations

from typing import Callable, Iterable

import torch
from torch import nn

from mibench.metrics.batching import logits_and_features, module_device
from mibench.world import Split


class PrivateReference:
    """Private-train images and labels with cached eval-model and per-identity features.

    Features live on the evaluation model's device, which is where metrics run.
    """

    def __init__(self, split: Split, eval_model: nn.Module, *, batch_size: int = 128) -> None:
        if split.name != "private-train":
            raise ValueError(f"the metric reference is the private-train split, got {split.name!r}")
        self.split = split
        self.eval_model = eval_model
        self.batch_size = batch_size
        self._eval_features: torch.Tensor | None = None
        self._per_identity: dict[tuple[str, int], torch.Tensor] = {}

    @property
    def device(self) -> torch.device:
        return module_device(self.eval_model)

    def indices_of(self, label: int) -> torch.Tensor:
        """Indices of the private-train images of identity ``label`` (raises if there are none)."""
        index = self.split.of_class(label)
        if index.numel() == 0:
            raise ValueError(f"identity {label} has no private-train image; generated labels must "
                             f"be private class indices 0..{self.split.num_classes - 1}")
        return index

    def images_of(self, label: int) -> torch.Tensor:
        """Private-train images of identity ``label`` in [0, 1], on :attr:`device`."""
        return self.split.float_images(self.indices_of(label)).to(self.device)

    def eval_features(self) -> torch.Tensor:
        """Evaluation-model features of every private-train image (N×D), computed once."""
        if self._eval_features is None:
            self._eval_features = torch.cat([
                logits_and_features(self.eval_model, images, self.batch_size)[1]
                for images, _ in self.split.batches(self.batch_size)])
        return self._eval_features

    def features_of(self, kind: str, labels: Iterable[int],
                    embed: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """``embed`` of the private images of ``labels``, concatenated; cached per (kind, label)."""
        parts = []
        for label in labels:
            key = (kind, int(label))
            if key not in self._per_identity:
                self._per_identity[key] = embed(self.images_of(int(label)))
            parts.append(self._per_identity[key])
        return torch.cat(parts)
