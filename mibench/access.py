"""Access views: what an attack may ask of a target, and an exact ledger of what it asked.

The harness never hands an attack the raw target (design.md §2). It wraps it in the view that
the attack's declared threat model allows:

- :class:`WhiteBox` — logits and features with gradients, parameters, gallery templates;
- :class:`Scores`   — probabilities only, computed without autograd and detached;
- :class:`Labels`   — the top-1 label only.

Every image sent is counted in a :class:`QueryLedger`: a *forward* query per image, plus a
*gradient* query per image whose input gradient is actually computed (counted in the backward
pass, so a query whose graph is never backpropagated costs no gradient query). Queries made
inside ``ledger.scope(labels)`` are attributed to those identities.
"""

from __future__ import annotations

from collections import Counter
from contextlib import contextmanager
from typing import Any, ClassVar, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from mibench.errors import AccessError

ACCESS_LEVELS = ("whitebox", "scores", "labels")
PREPARE = "prepare"          # ledger bucket: queries outside any identity scope (prior training)
UNATTRIBUTED = "unattributed"  # scoped queries whose batch does not tile the scope's identities


class QueryLedger:
    """Exact counts of images sent to the target, by kind and by identity."""

    KINDS = ("forward", "gradient")

    def __init__(self) -> None:
        self.counts: dict[str, Counter[Any]] = {kind: Counter() for kind in self.KINDS}
        self._scope: tuple[int, ...] | None = None

    @contextmanager
    def scope(self, labels: torch.Tensor | list[int]) -> Iterator[None]:
        """Attribute queries to ``labels``: a batch of k·len(labels) images is counted as the
        label list tiled k times (one image per entry, e.g. repeated for augmentations)."""
        previous = self._scope
        self._scope = tuple(int(v) for v in (labels.tolist() if torch.is_tensor(labels)
                                              else labels))
        try:
            yield
        finally:
            self._scope = previous

    @property
    def current_scope(self) -> tuple[int, ...] | None:
        return self._scope

    def record(self, kind: str, n: int, scope: tuple[int, ...] | None = None) -> None:
        """Count ``n`` images of ``kind``, attributed to ``scope`` (default: the current one)."""
        if kind not in self.counts:
            raise ValueError(f"unknown query kind {kind!r}; kinds are {self.KINDS}")
        scope = self._scope if scope is None else scope
        counter = self.counts[kind]
        if not scope:
            counter[PREPARE] += n
        elif n % len(scope) == 0:
            for label in scope:
                counter[label] += n // len(scope)
        else:
            counter[UNATTRIBUTED] += n

    def total(self, kind: str) -> int:
        return sum(self.counts[kind].values())

    def per_identity(self, kind: str) -> dict[int, int]:
        """Counts attributed to each identity (excludes the prepare/unattributed buckets)."""
        return {k: v for k, v in self.counts[kind].items() if isinstance(k, int)}

    def to_dict(self) -> dict[str, dict[str, int]]:
        return {kind: {str(k): v for k, v in counter.items()}
                for kind, counter in self.counts.items()}


class _CountInputGradient(torch.autograd.Function):
    """Identity in the forward pass; records a gradient query per image in the backward pass."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, ledger: QueryLedger,
                scope: tuple[int, ...] | None) -> torch.Tensor:
        ctx.ledger, ctx.scope, ctx.n = ledger, scope, x.shape[0]
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        ctx.ledger.record("gradient", ctx.n, ctx.scope)
        return grad, None, None


class TargetView:
    """Base view: metadata every attack may read; every query method refuses by default."""

    access: ClassVar[str] = ""

    def __init__(self, target: nn.Module, ledger: QueryLedger) -> None:
        self._target = target.eval().requires_grad_(False)
        self.ledger = ledger

    @property
    def num_classes(self) -> int:
        return self._target.num_classes

    @property
    def resolution(self) -> int:
        return self._target.resolution

    @property
    def feature_dim(self) -> int:
        return self._target.feature_dim

    @property
    def kind(self) -> str:
        return self._target.kind

    def _refuse(self, what: str) -> AccessError:
        return AccessError(f"{what} is not available with {self.access!r} access; an attack "
                           f"that needs it must declare a stronger access level in its spec")

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise self._refuse("logits and features")

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        raise self._refuse("logits")

    def features(self, x: torch.Tensor) -> torch.Tensor:
        raise self._refuse("features")

    def probs(self, x: torch.Tensor) -> torch.Tensor:
        raise self._refuse("probabilities")

    def labels(self, x: torch.Tensor) -> torch.Tensor:
        raise self._refuse("labels")

    def _scores(self, x: torch.Tensor) -> torch.Tensor:
        """Logits computed without autograd, counted as forward queries."""
        self.ledger.record("forward", x.shape[0])
        with torch.no_grad():
            logits, _ = self._target(x)
        return logits.detach()

    def _check(self, x: torch.Tensor) -> torch.Tensor:
        """Validate an image batch and move it to the target's device (differentiably)."""
        if not torch.is_tensor(x) or x.ndim != 4 or x.shape[1] != 3:
            shape = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
            raise ValueError(f"targets take N×3×H×W image tensors in [0,1], got {shape}")
        device = next(self._target.buffers(), next(self._target.parameters(), x)).device
        return x.to(device)


class Labels(TargetView):
    """Label-only access: the top-1 predicted identity."""

    access = "labels"

    def labels(self, x: torch.Tensor) -> torch.Tensor:
        return self._scores(self._check(x)).argmax(dim=1)


class Scores(Labels):
    """Black-box score access: softmax probabilities, never differentiable."""

    access = "scores"

    def probs(self, x: torch.Tensor) -> torch.Tensor:
        return F.softmax(self._scores(self._check(x)), dim=1)


class WhiteBox(Scores):
    """White-box access: differentiable logits and features, parameters and templates."""

    access = "whitebox"

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self._check(x)
        self.ledger.record("forward", x.shape[0])
        if torch.is_grad_enabled() and x.requires_grad:
            x = _CountInputGradient.apply(x, self.ledger, self.ledger.current_scope)
        return self._target(x)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self(x)[0]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self(x)[1]

    @property
    def module(self) -> nn.Module:
        """The target network itself (e.g. for FGMIA's TransF of the classification head)."""
        return self._target

    def _linear_head(self) -> nn.Linear:
        head = self._target.linear_head()
        if head is None:
            raise AccessError("this target has no linear classification head (it is open-set "
                              "or its classifier is not a single linear layer)")
        return head

    @property
    def head_weight(self) -> torch.Tensor:
        """The closed-set linear head's weight (num_classes × feature_dim), e.g. for TransF."""
        return self._linear_head().weight.detach().clone()

    @property
    def head_bias(self) -> torch.Tensor | None:
        """The closed-set linear head's bias (num_classes), ``None`` where it has none."""
        bias = self._linear_head().bias
        return None if bias is None else bias.detach().clone()

    @property
    def gallery(self) -> torch.Tensor:
        """Enrolled templates of an open-set target (num_classes × feature_dim)."""
        if self.kind != "open":
            raise AccessError("this target is closed-set: it has a linear head, not a gallery")
        return self._target.gallery.detach().clone()


VIEWS: dict[str, type[TargetView]] = {"whitebox": WhiteBox, "scores": Scores, "labels": Labels}


def view_for(access: str, target: nn.Module, ledger: QueryLedger) -> TargetView:
    """Wrap ``target`` in the view that the access level ``access`` allows."""
    if access not in VIEWS:
        raise AccessError(f"unknown access level {access!r}; choose one of {ACCESS_LEVELS}")
    return VIEWS[access](target, ledger)
