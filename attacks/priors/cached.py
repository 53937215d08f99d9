"""Train-once priors: a trained module is stored in the cache, keyed by its config and data."""

from __future__ import annotations

import io
from typing import Any, Callable, Mapping

import torch
from torch import nn

from mibench.attack import AttackContext
from mibench.cache import atomic_write_bytes

WEIGHTS = "weights.pt"


def cached_module(ctx: AttackContext, component: str, config: Mapping[str, Any],
                  make: Callable[[], nn.Module], train: Callable[[nn.Module], None],
                  version: str = "1") -> nn.Module:
    """Return ``make()`` with weights trained by ``train(module)``, or loaded from the cache.

    The cache key covers ``component``, ``config``, the auxiliary data's fingerprint (and, for
    target-dependent priors, whatever the caller puts in ``config``) and ``version``.
    """
    key = ctx.cache.key(component, dict(config), data=ctx.data_fingerprint, version=version)

    def build(path: Any) -> None:
        module = make().to(ctx.device)
        train(module)
        atomic_write_bytes(path / WEIGHTS, _state_bytes(module))

    path = ctx.cache.build(component, key, build)
    module = make()
    state = torch.load(path / WEIGHTS, map_location="cpu", weights_only=True)
    module.load_state_dict(state)
    return module.to(ctx.device).eval()


def _state_bytes(module: nn.Module) -> bytes:
    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in module.state_dict().items()}, buffer)
    return buffer.getvalue()
