"""Checkpoint formats: our self-describing format, and importers for the formats users have.

Our format (MIA-toolbox v2 style, plus integrity): a ``torch.save`` dict ``{format, version,
arch, config, num_classes, state_dict, metrics, data_fingerprint, sha256}`` where ``sha256``
hashes the tensors (names, dtypes, shapes, bytes); written atomically.

:func:`import_checkpoint` reads the formats released by the model-inversion literature and
returns a state dict in the architecture's published layout (anchors.md §1.1):

* KEDMI / GMI / PLG-MI ``.tar`` — ``{'state_dict': …}`` with ``module.`` prefixes;
* MIA toolbox v2 — ``{'model_name', 'config', 'state_dict', …}``;
* PPA — ``{'model_state_dict', …}`` (or a bare dict) with ``model.`` prefixes;
* insightface ``backbone.pth`` — a bare state dict;
* our own format (its backbone).

Every file is read with ``torch.load(weights_only=True)``: a pickle that would construct
anything but tensors and plain containers is refused before any of its code runs. Loading is
strict; the one tolerance is a missing BatchNorm ``num_batches_tracked`` counter (files from
PyTorch < 0.4.1 lack it), which is filled with 0 as ``torch.nn`` itself does.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tarfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch

from mibench.cache import atomic_write_bytes
from mibench.errors import ConfigError
from mibench.target import Target
from mibench.targets.config import TargetConfig
from mibench.targets.errors import CheckpointError
from mibench.targets.models import BACKBONES, build_backbone, build_target
from mibench.targets.strict import check_state_dict, load_strict

FORMAT = "mibench-target"
VERSION = 1
FIELDS = ("arch", "config", "num_classes", "state_dict", "metrics", "data_fingerprint", "sha256")
WRAPPER_PREFIXES = ("module.", "model.")  # DataParallel; PPA's Classifier wrapper
PathLike = str | os.PathLike[str]
ZIP_MAGIC = b"PK\x03\x04"
PICKLE_PROTO = b"\x80"


def tensors_sha256(state_dict: Mapping[str, torch.Tensor]) -> str:
    """sha256 over (name, dtype, shape, bytes) of every tensor, in sorted name order."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _is_torch_file(path: Path) -> bool:
    """Whether ``path`` starts like a file ``torch.save`` writes: a zip archive (since PyTorch
    1.6), a pickle of protocol 2 or higher (the legacy format; protocol 2+ pickles open with
    the PROTO opcode 0x80) or a tar archive (PyTorch < 0.4)."""
    with open(path, "rb") as fh:
        head = fh.read(4)
    return head == ZIP_MAGIC or head[:1] == PICKLE_PROTO or tarfile.is_tarfile(path)


def read_checkpoint(path: PathLike) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU, with one-line errors."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; check the path")
    if path.stat().st_size and not _is_torch_file(path):
        raise CheckpointError(f"{path} is not a PyTorch checkpoint (neither a zip archive nor a "
                              "pickle, as torch.save writes); pass the weights file itself")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "Weights only load failed" in str(err):
            reason = next((line.strip() for line in str(err).splitlines()
                           if "Unsupported" in line or "GLOBAL" in line), "non-tensor objects")
            raise CheckpointError(
                f"{path} holds pickled code or objects, not just tensors ({reason}); refused "
                "without running it. Re-save only the weights: torch.save(model.state_dict(), "
                "path)") from None
        raise CheckpointError(f"{path} is not a valid checkpoint ({err}); "
                              "download or save it again") from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError) as err:
        detail = str(err).split(". ")[0] or type(err).__name__
        raise CheckpointError(f"{path} is truncated or corrupt ({detail}); "
                              "download or save it again") from None


@dataclass
class LoadedTarget:
    """A target restored from our format, with what was recorded beside it."""

    target: Target
    config: TargetConfig
    metrics: dict[str, Any]
    data_fingerprint: str
    sha256: str


def save_checkpoint(path: PathLike, target: Target, config: TargetConfig, *,
                    metrics: Mapping[str, Any] | None = None,
                    data_fingerprint: str = "") -> str:
    """Write ``target`` in our format (atomically); returns the tensors' sha256."""
    state = OrderedDict((k, v.detach().cpu().clone()) for k, v in target.state_dict().items())
    sha = tensors_sha256(state)
    payload = {"format": FORMAT, "version": VERSION, "arch": config.arch,
               "config": config.to_dict(), "num_classes": target.num_classes,
               "state_dict": state, "metrics": dict(metrics or {}),
               "data_fingerprint": data_fingerprint, "sha256": sha}
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write_bytes(path, buffer.getvalue())
    return sha


def load_checkpoint(path: PathLike, device: str | torch.device = "cpu") -> LoadedTarget:
    """Rebuild a target saved by :func:`save_checkpoint`, verifying its tensors' sha256."""
    payload = read_checkpoint(path)
    if not (isinstance(payload, dict) and payload.get("format") == FORMAT):
        raise CheckpointError(f"{path} is not a mibench target checkpoint; for released "
                              "weights use import_checkpoint(path, TargetConfig(...))")
    absent = [k for k in FIELDS if k not in payload]
    if absent or payload.get("version") != VERSION:
        raise CheckpointError(f"{path} is a mibench checkpoint of version "
                              f"{payload.get('version')} missing {absent or 'nothing'}; this "
                              f"mibench reads version {VERSION}: rebuild the target")
    if tensors_sha256(payload["state_dict"]) != payload["sha256"]:
        raise CheckpointError(f"{path}: tensors do not match the recorded sha256 (corrupt or "
                              "edited); rebuild the target")
    try:
        config = TargetConfig(**payload["config"])
    except (ConfigError, TypeError) as err:
        raise CheckpointError(f"{path} records a config this mibench cannot use ({err}); "
                              "rebuild the target") from None
    target = build_target(config, int(payload["num_classes"]))
    load_strict(target, payload["state_dict"], str(path))
    return LoadedTarget(target=target.to(device).eval(), config=config,
                        metrics=dict(payload["metrics"]),
                        data_fingerprint=str(payload["data_fingerprint"]), sha256=payload["sha256"])


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def unwrap(obj: Any, path: PathLike) -> tuple[str, Mapping[str, torch.Tensor]]:
    """(format name, raw state dict) of a loaded checkpoint object."""
    if isinstance(obj, Mapping):
        if obj.get("format") == FORMAT and _is_state_dict(obj.get("state_dict")):
            state = obj["state_dict"]
            return "mibench", {k.removeprefix("backbone."): v for k, v in state.items()
                               if k != "gallery"}
        if "model_name" in obj and _is_state_dict(obj.get("state_dict")):
            return "MIA toolbox v2", obj["state_dict"]
        if _is_state_dict(obj.get("model_state_dict")):
            return "PPA", obj["model_state_dict"]
        if _is_state_dict(obj.get("state_dict")):
            return "KEDMI/PLG-MI", obj["state_dict"]
        if _is_state_dict(obj):
            return "bare state dict", obj
    keys = sorted(map(str, obj))[:8] if isinstance(obj, Mapping) else type(obj).__name__
    raise CheckpointError(f"{path}: unrecognised checkpoint layout (top level: {keys}); expected "
                          "a state dict or a dict with state_dict / model_state_dict")


def strip_wrappers(state: Mapping[str, torch.Tensor]) -> "OrderedDict[str, torch.Tensor]":
    """Remove ``module.`` / ``model.`` prefixes that every key carries (wrappers, not layers)."""
    keys = list(state)
    stripped = True
    while stripped:
        stripped = False
        for prefix in WRAPPER_PREFIXES:
            if keys and all(k.startswith(prefix) for k in keys):
                keys = [k[len(prefix):] for k in keys]
                stripped = True
    return OrderedDict(zip(keys, state.values(), strict=True))


def import_checkpoint(path: PathLike,
                      arch_config: TargetConfig) -> "OrderedDict[str, torch.Tensor]":
    """Read a released checkpoint and return it in ``arch_config``'s published layout.

    The result loads strictly with ``target.load_published(state)``. A classifier head, if the
    file has one, is kept (its rows give the number of classes). Raises
    :class:`CheckpointError` naming the missing / unexpected keys or shapes otherwise.
    """
    kind, raw = unwrap(read_checkpoint(path), path)
    state = strip_wrappers(raw)
    head = f"{BACKBONES[arch_config.arch].head_key}.weight"
    num_classes = int(state[head].shape[0]) if head in state else None
    with torch.device("meta"):
        expected = build_backbone(arch_config, num_classes).state_dict()
    for name, tensor in expected.items():
        if name.endswith("num_batches_tracked") and name not in state:
            state[name] = torch.zeros((), dtype=tensor.dtype)
    check_state_dict(expected, state, f"{path} ({kind})")
    return OrderedDict((k, state[k]) for k in expected)
