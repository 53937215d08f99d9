"""Train-once priors: a trained module is stored in the cache, keyed by its config and data."""

from __future__ import annotations

import io
from typing import Any, Callable, Mapping

import torch
from torch import nn

from mibench import precision
from mibench.attack import AttackContext
from mibench.cache import atomic_write_bytes
from mibench.errors import CacheError

WEIGHTS = "weights.pt"


def cached_module(ctx: AttackContext, component: str, config: Mapping[str, Any],
                  make: Callable[[], nn.Module], train: Callable[[nn.Module], None],
                  version: str = "1", data: str | None = None) -> nn.Module:
    """Return ``make()`` with weights trained by ``train(module)``, or loaded from the cache.

    The cache key covers ``component``, ``config``, ``data`` (default: the context's data
    fingerprint, which names the target too for target-dependent priors; pass
    ``ctx.aux_fingerprint`` for a module that depends on the aux split alone), ``version`` and
    the precision it was trained under when that is not fp32 (:func:`mibench.precision.key_tag`).
    """
    data = ctx.data_fingerprint if data is None else data
    config = dict(config)
    if precision.key_tag():  # trained under mixed precision: another artefact than fp32's
        config["precision"] = precision.key_tag()
    key = ctx.cache.key(component, config, data=data, version=version)

    def build(path: Any) -> None:
        module = make().to(ctx.device)
        train(module)
        atomic_write_bytes(path / WEIGHTS, _state_bytes(module))

    path = ctx.cache.build(component, key, build)
    module = make()
    state = torch.load(path / WEIGHTS, map_location="cpu", weights_only=True)
    try:
        module.load_state_dict(state)
    except RuntimeError as error:
        raise CacheError(f"cached {component} at {path} does not fit this version's network "
                         f"({str(error).splitlines()[0]}); delete that folder to retrain it, "
                         f"and bump the component's cache version when changing its "
                         f"architecture") from error
    return module.to(ctx.device).eval()


def _state_bytes(module: nn.Module) -> bytes:
    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in module.state_dict().items()}, buffer)
    return buffer.getvalue()
