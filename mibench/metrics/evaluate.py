"""Evaluate one set of generated images with the registered metrics."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from mibench.metrics.base import Metric, MetricValue
from mibench.metrics.context import EvalContext
from mibench.metrics.perceptual import standard_lpips_available
from mibench.metrics.reference import PrivateReference
from mibench.registry import METRICS


def default_metrics() -> list[str]:
    """Every registered metric, except ``st_lpips`` when standard LPIPS can be computed.

    ST-LPIPS is the offline stand-in for LPIPS; when both exist only the standard one is run by
    default (ask for ``st_lpips`` by name to get both).
    """
    names = METRICS.names()
    if standard_lpips_available():
        names.remove("st_lpips")
    return names


def evaluate(generated: torch.Tensor, labels: torch.Tensor, *, target: nn.Module,
             private: PrivateReference, metrics: Sequence[str] | None = None,
             batch_size: int = 64) -> list[MetricValue]:
    """Each metric's value, or the reason it has none, for images meant to show ``labels``.

    ``generated`` are [0,1] N×3×H×W images; ``labels`` their intended private identities. The
    evaluation model is ``private.eval_model`` and its device is where metrics run. See
    :func:`measure`.
    """
    ctx = EvalContext(generated, labels, target=target, private=private, batch_size=batch_size)
    return measure(ctx, metrics)


def measure(ctx: EvalContext, metrics: Sequence[str] | None = None) -> list[MetricValue]:
    """Each metric's value on ``ctx`` (model outputs and features computed once and shared), or
    the reason it has none. ``metrics`` are registered names or aliases (default:
    :func:`default_metrics`). A metric that cannot be computed returns its reason; any other
    error propagates."""
    names = default_metrics() if metrics is None else [METRICS.canonical(n) for n in metrics]
    chosen: list[Metric] = [METRICS.get(name) for name in names]
    return [m.measure(ctx) for m in chosen]
