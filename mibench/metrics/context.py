"""One image set under evaluation and the features its metrics share, each computed once."""

from __future__ import annotations

from functools import cached_property
from typing import Any, Callable, Iterator

import torch
from torch import nn

from mibench.errors import MibenchError
from mibench.metrics.batching import logits_and_features
from mibench.metrics.reference import PrivateReference


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

    Per-image results (model outputs, embeddings) are computed on first use and shared by every
    metric that needs them: metric modules memoise theirs with :meth:`per_image`. A
    :meth:`subset` (the attack's selected images) slices its parent's per-image results instead
    of recomputing them. Results live on the evaluation model's device (``private.device``).
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
        self._per_image: dict[str, torch.Tensor] = {}
        self._parent: tuple[EvalContext, torch.Tensor] | None = None
        self._shared: dict[str, Any] = {}

    def subset(self, index: torch.Tensor) -> EvalContext:
        """The images ``index`` picks (indices or a mask), sharing this context's per-image
        results: whatever either computes is computed once, over all images."""
        index = torch.arange(self.generated.shape[0])[index.cpu()]
        child = EvalContext(self.generated[index], self.labels.cpu()[index], target=self.target,
                            private=self.private, batch_size=self.batch_size)
        child._parent = (self, index)
        return child

    def per_image(self, key: str, embed: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """``embed(images)`` (one row per generated image) under ``key``, computed once; a subset
        takes its rows from its parent's (a failure is not memoised)."""
        if key not in self._per_image:
            if self._parent is None:
                self._per_image[key] = embed(self.generated)
            else:
                parent, index = self._parent
                rows = parent.per_image(key, embed)
                self._per_image[key] = rows[index.to(rows.device)]
        return self._per_image[key]

    @property
    def target_logits(self) -> torch.Tensor:
        return self.per_image("target_logits", lambda images: self._outputs(
            "target", self.target, images)[0])

    @property
    def target_features(self) -> torch.Tensor:
        return self.per_image("target_features", lambda images: self._outputs(
            "target", self.target, images)[1])

    @property
    def eval_logits(self) -> torch.Tensor:
        return self.per_image("eval_logits", lambda images: self._outputs(
            "eval", self.private.eval_model, images)[0])

    @property
    def eval_features(self) -> torch.Tensor:
        return self.per_image("eval_features", lambda images: self._outputs(
            "eval", self.private.eval_model, images)[1])

    @property
    def eval2_logits(self) -> torch.Tensor:
        """Logits of the second evaluation model (issue 19.4; ``private.eval2_model``, which
        the caller checks is not ``None``)."""
        model = self.private.eval2_model
        if model is None:
            raise ValueError("this reference has no second evaluation model")
        return self.per_image("eval2_logits", lambda images: self._outputs(
            "eval2", model, images)[0])

    def _outputs(self, prefix: str, model: nn.Module,
                 images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``model``'s logits and features of the root context's ``images`` (only the root
        computes); both are memoised there as ``{prefix}_logits`` / ``{prefix}_features``, so
        each model runs once per image set."""
        logits, features = logits_and_features(model, images, self.batch_size)
        root = self.root
        root._per_image.setdefault(f"{prefix}_logits", logits.to(self.device))
        root._per_image.setdefault(f"{prefix}_features", features.to(self.device))
        return root._per_image[f"{prefix}_logits"], root._per_image[f"{prefix}_features"]

    def shared(self, key: str, compute: Callable[[], Any]) -> Any:
        """``compute()`` under ``key``, computed once for the root context and every subset of
        it (a value of the whole cell, e.g. the target's verification threshold). A
        :class:`~mibench.errors.MibenchError` (a metric's reason) is memoised too: it is raised
        again, not recomputed."""
        root = self.root
        if key not in root._shared:
            try:
                root._shared[key] = compute()
            except MibenchError as why:
                root._shared[key] = why
        value = root._shared[key]
        if isinstance(value, MibenchError):
            raise value
        return value

    @property
    def root(self) -> EvalContext:
        """The context this one is a subset of (itself when it is not a subset)."""
        return self if self._parent is None else self._parent[0].root

    @cached_property
    def identities(self) -> list[int]:
        """The attacked identities: the distinct labels, ascending."""
        return [int(label) for label in torch.unique(self.labels)]

    @cached_property
    def identity_subsets(self) -> list[tuple[EvalContext, int]]:
        """One :meth:`subset` per attacked identity and its image count, built once and shared
        by every metric's per-identity values (the intervals' bootstrap)."""
        return [(self.subset(index), int(index.numel())) for _, index in self.by_identity()]

    def by_identity(self) -> Iterator[tuple[int, torch.Tensor]]:
        """``(label, indices of the generated images with that label)`` per attacked identity."""
        for label in self.identities:
            yield label, torch.nonzero(self.labels == label).flatten()
