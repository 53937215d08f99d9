"""One image set under evaluation and the features its metrics share, each computed once."""

from __future__ import annotations

from functools import cached_property
from typing import Callable, Iterator, TypeVar

import torch
from torch import nn

from mibench.metrics.batching import logits_and_features
from mibench.metrics.reference import PrivateReference

T = TypeVar("T")


def check_images(images: torch.Tensor, what: str) -> None:
    """Enforce the suite's image contract (design.md §2): float N×3×H×W in [0, 1].

    The pixel-range bugs of the peers (FGMIA's [-1,1] tensors into a [0,1] FID, Diff-MI's [0,1]
    tensors into a [-1,1] LPIPS; attacks.md §A.4) start with an unchecked range.
    """
    if not images.is_floating_point() or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"{what} must be float N×3×H×W images in [0,1], got "
                         f"{images.dtype} {tuple(images.shape)}")
    low, high = float(images.min()), float(images.max())
    if low < 0.0 or high > 1.0:
        raise ValueError(f"{what} must lie in [0,1], got values in [{low:.3g}, {high:.3g}]")


class EvalContext:
    """Generated images, their intended identities, the target and the private reference.

    Model outputs are computed on first use and shared by every metric that needs them; metric
    modules memoise their own intermediate results with :meth:`shared`. Results live on the
    evaluation model's device (``private.device``).
    """

    def __init__(self, generated: torch.Tensor, labels: torch.Tensor, *, target: nn.Module,
                 private: PrivateReference, batch_size: int = 64) -> None:
        check_images(generated, "generated images")
        if labels.shape != (generated.shape[0],) or labels.is_floating_point():
            raise ValueError(f"labels must be an integer tensor of shape ({generated.shape[0]},), "
                             f"got {labels.dtype} {tuple(labels.shape)}")
        if generated.shape[0] == 0:
            raise ValueError("there are no generated images to evaluate")
        self.generated = generated
        self.target = target
        self.private = private
        self.batch_size = batch_size
        self.device = private.device
        self.labels = labels.long().to(self.device)
        self._shared: dict[str, object] = {}

    @cached_property
    def target_logits(self) -> torch.Tensor:
        return logits_and_features(self.target, self.generated, self.batch_size)[0].to(self.device)

    @cached_property
    def _eval_outputs(self) -> tuple[torch.Tensor, torch.Tensor]:
        return logits_and_features(self.private.eval_model, self.generated, self.batch_size)

    @property
    def eval_logits(self) -> torch.Tensor:
        return self._eval_outputs[0]

    @property
    def eval_features(self) -> torch.Tensor:
        return self._eval_outputs[1]

    @cached_property
    def identities(self) -> list[int]:
        """The attacked identities: the distinct labels, ascending."""
        return [int(label) for label in torch.unique(self.labels)]

    def by_identity(self) -> Iterator[tuple[int, torch.Tensor]]:
        """``(label, indices of the generated images with that label)`` per attacked identity."""
        for label in self.identities:
            yield label, torch.nonzero(self.labels == label).flatten()

    def shared(self, key: str, compute: Callable[[], T]) -> T:
        """``compute()`` once per context under ``key`` (a failure is not memoised)."""
        if key not in self._shared:
            self._shared[key] = compute()
        return self._shared[key]  # type: ignore[return-value]
