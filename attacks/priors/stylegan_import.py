"""Import the pretrained StyleGAN2 generators that PPA and IF-GMI use, without running their code.

Two layouts are read and mapped onto our synthesis in its faithful mode
(``StyleGAN(faithful=True)``, ``priors/stylegan.py``):

* **NVLabs stylegan2-ada-pytorch ``.pkl``** (PPA's and IF-GMI's FFHQ / MetFaces / AFHQ
  generators). The file is a plain pickle of a dict with ``G``, ``D``, ``G_ema``,
  ``augment_pipe`` and ``training_set_kwargs``. Its modules are ``torch_utils.persistence``
  objects: each is pickled as ``_reconstruct_persistent_obj(meta)`` with ``meta`` a dict of
  the class name, the module's source code (``module_src``) and its ``__dict__`` (``state``:
  ``_parameters``, ``_buffers``, ``_modules``, plain attributes); tensors are
  ``_rebuild_tensor_v2`` / ``_rebuild_parameter`` of storages that ``_load_from_bytes``
  restores from an embedded ``torch.save`` blob. NVLabs' loader imports ``module_src``; we
  never do. :class:`RestrictedUnpickler` resolves only those globals (plus ``OrderedDict``,
  ``set``, ``dnnlib.util.EasyDict``, numpy's scalar and dtype: the layers' gains), each to an
  inert stand-in: a persistent object becomes a :class:`PersistentObject` holding its state, a
  storage blob is read with ``torch.load(weights_only=True)``. Any other global
  (``os.system``, ``builtins.eval``, a class with a ``__reduce__``) is refused, naming it,
  before anything is called. ``G_ema``'s parameters and buffers then form a state dict
  (``mapping.fc0.weight``, ``synthesis.b4.conv1.weight``, ``synthesis.b8.torgb.affine.weight``,
  ``noise_const``, ``noise_strength``, ``mapping.w_avg``, …); ``conv_clamp`` comes from the
  layers' attributes.
* **rosinality stylegan2-pytorch ``.pt``** (``{"g_ema": state_dict, "latent_avg": …}``, a
  training checkpoint whose ``args`` is an ``argparse.Namespace``, or a bare state dict), read
  with ``torch.load(weights_only=True)``: ``style.1.weight``, ``conv1.conv.weight``,
  ``convs.0.conv.weight``, ``to_rgbs.0.conv.weight``, ``noises.noise_0``, … are renamed to the
  NVLabs names first. Without ``latent_avg`` the
  mean w is estimated from 10,000 seeded z's (rosinality's ``mean_latent``).

Sizes come from the tensors; loading is strict (missing, unexpected or mis-shaped tensors are
one-line errors); conditional generators and non-``skip`` architectures are refused.
"""

from __future__ import annotations

import argparse
import io
import math
import os
import pickle
import re
import struct
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from mibench.attack import AttackContext
from mibench.attacks.priors.fir import FIR_TAPS
from mibench.attacks.priors.stylegan import (CandidateSearchConfig, StyleGAN, channels,
                                             load_stylegan)
from mibench.errors import MibenchError

WHERE_TO_GET = ("download a stylegan2-ada-pytorch generator pickle (e.g. "
                "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/ffhq.pkl, the "
                "one PPA uses) or a rosinality stylegan2-pytorch .pt, and set "
                "stylegan_checkpoint to its path")
MEAN_LATENT_SAMPLES = 10_000
MAX_DEPTH = 8   # G_ema → synthesis → b1024 → conv0 → affine is 4 deep; deeper: a cycle or junk
PathLike = str | os.PathLike[str]


class StyleGANCheckpointError(MibenchError):
    """A StyleGAN2 checkpoint is missing, unsafe, corrupt, or does not fit our synthesis."""


@dataclass
class PersistentObject:
    """Inert stand-in for a ``torch_utils.persistence`` module: its class and pickled state."""

    class_name: str
    state: dict[str, Any]


class EasyDict(dict):
    """Stand-in for ``dnnlib.util.EasyDict`` (a dict with attribute access): only the items."""


def _persistent_object(meta: Any) -> PersistentObject:
    if not (isinstance(meta, dict) and meta.get("type") == "class"
            and isinstance(meta.get("class_name"), str) and isinstance(meta.get("state"), dict)):
        raise pickle.UnpicklingError("a persistent object without class name and state")
    return PersistentObject(meta["class_name"], meta["state"])


def _storage_from_bytes(blob: Any) -> torch.storage.TypedStorage:
    if not isinstance(blob, bytes):
        raise pickle.UnpicklingError("a tensor storage that is not a byte string")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)   # TypedStorage deprecation
        storage = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    if not isinstance(storage, torch.storage.TypedStorage):
        raise pickle.UnpicklingError("a tensor storage blob holding something else")
    return storage


def _rebuild_tensor(storage: Any, offset: int, size: tuple[int, ...],
                    stride: tuple[int, ...], *_: Any) -> torch.Tensor:
    if not isinstance(storage, torch.storage.TypedStorage):
        raise pickle.UnpicklingError("a tensor without a storage")
    tensor = torch.empty(0, dtype=storage.dtype)
    return tensor.set_(storage._untyped_storage, offset, size, stride)


class NumpyDtype:
    """Stand-in for ``numpy.dtype``: its type code and byte order, nothing else."""

    def __init__(self, code: Any, *_: Any) -> None:
        self.code, self.order = str(code), "<"

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) > 1 and state[1] in ("<", ">", "|", "="):
            self.order = state[1]


NUMPY_SCALARS = {"f8": "d", "f4": "f", "i8": "q", "i4": "i", "u1": "B", "b1": "?"}
"""numpy scalar type codes → struct formats (NVLabs' layer gains are numpy float64s)."""


def _numpy_scalar(dtype: Any, data: Any = b"") -> float | int | bool:
    if not (isinstance(dtype, NumpyDtype) and dtype.code in NUMPY_SCALARS
            and isinstance(data, bytes)):
        raise pickle.UnpicklingError("a numpy scalar of an unsupported type")
    return struct.unpack(("<" if dtype.order != ">" else ">") + NUMPY_SCALARS[dtype.code],
                         data)[0]


def _rebuild_parameter(data: Any, *_: Any) -> torch.Tensor:
    if not isinstance(data, torch.Tensor):
        raise pickle.UnpicklingError("a parameter without a tensor")
    return data


ALLOWED_GLOBALS: dict[tuple[str, str], Callable[..., Any]] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _persistent_object,
    ("torch.storage", "_load_from_bytes"): _storage_from_bytes,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("collections", "OrderedDict"): OrderedDict,
    ("builtins", "set"): set,
    ("dnnlib.util", "EasyDict"): EasyDict,
    ("numpy", "dtype"): NumpyDtype,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,      # numpy 1 (the 2020 pickles)
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,     # numpy 2
}
"""The only globals an NVLabs generator pickle needs, each mapped to an inert stand-in."""


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only :data:`ALLOWED_GLOBALS`; nothing from the file is run."""

    def __init__(self, file: io.BufferedIOBase, source: str) -> None:
        super().__init__(file)
        self.source = source

    def find_class(self, module: str, name: str) -> Callable[..., Any]:
        try:
            return ALLOWED_GLOBALS[module, name]
        except KeyError:
            raise StyleGANCheckpointError(
                f"{self.source} refers to {module}.{name}, which a StyleGAN2 generator pickle "
                "does not need; refused without running it (the file may carry code). Use the "
                "original NVLabs pickle or a weights-only .pt") from None

    def persistent_load(self, pid: Any) -> Any:
        raise StyleGANCheckpointError(f"{self.source} uses persistent ids ({str(pid)[:40]}), "
                                      "which NVLabs generator pickles do not; refused")


def read_nvlabs_pickle(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, dict[str, Any]]]:
    """``G_ema``'s tensors by dotted name, and each submodule's plain attributes by prefix."""
    try:
        with open(path, "rb") as file:
            data = RestrictedUnpickler(file, str(path)).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, RuntimeError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise StyleGANCheckpointError(f"{path} is not a readable NVLabs pickle ({reason}); "
                                      "download it again") from None
    generator = data.get("G_ema") if isinstance(data, dict) else None
    if not isinstance(generator, PersistentObject):
        keys = sorted(map(str, data))[:6] if isinstance(data, dict) else type(data).__name__
        raise StyleGANCheckpointError(f"{path} holds no G_ema generator (top level: {keys}); "
                                      "expected a stylegan2-ada-pytorch network pickle")
    tensors: dict[str, torch.Tensor] = {}
    attributes: dict[str, dict[str, Any]] = {}
    _flatten(generator, "", tensors, attributes, path)
    return tensors, attributes


def _flatten(module: PersistentObject, prefix: str, tensors: dict[str, torch.Tensor],
             attributes: dict[str, dict[str, Any]], path: Path) -> None:
    state = module.state
    attributes[prefix] = {k: v for k, v in state.items() if not k.startswith("_")}
    skipped = state.get("_non_persistent_buffers_set") or set()
    for group in ("_parameters", "_buffers"):
        for name, tensor in (state.get(group) or {}).items():
            if tensor is not None and name not in skipped:
                tensors[prefix + name] = tensor
    for name, child in (state.get("_modules") or {}).items():
        if child is None:
            continue
        if not isinstance(child, PersistentObject) or prefix.count(".") > MAX_DEPTH:
            raise StyleGANCheckpointError(f"{path}: submodule {prefix}{name} is not a "
                                          "persistent network module; not a StyleGAN2 pickle")
        _flatten(child, f"{prefix}{name}.", tensors, attributes, path)


def _check_fir(name: str, tensor: torch.Tensor, gain: float, source: str) -> None:
    taps = torch.tensor(FIR_TAPS)
    expected = taps[:, None] * taps[None, :]
    expected = expected / expected.sum() * gain
    if tuple(tensor.shape) != (4, 4) or not torch.allclose(tensor.float(), expected):
        raise StyleGANCheckpointError(f"{source}: {name} is not the [1, 3, 3, 1] FIR filter "
                                      "our faithful synthesis implements; unsupported generator")


def from_nvlabs_names(tensors: Mapping[str, torch.Tensor],
                      source: str) -> "OrderedDict[str, torch.Tensor]":
    """NVLabs names → our ``StyleGAN`` names (resample filters checked and dropped). Unknown
    names pass through unchanged, so that strict loading reports them."""
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    for name, tensor in tensors.items():
        if name.endswith("resample_filter"):
            _check_fir(name, tensor, 1.0, source)
            continue
        renamed = re.sub(r"^mapping\.fc(\d+)\.", r"mapping.\1.", name)
        renamed = "w_avg" if renamed == "mapping.w_avg" else renamed
        block = re.match(r"^synthesis\.b(\d+)\.(const|conv0\.|conv1\.|torgb\.)(.*)$", renamed)
        if block and int(block[1]) >= 4 and math.log2(int(block[1])).is_integer():
            index = int(math.log2(int(block[1]))) - 2
            part = "to_rgb." if block[2] == "torgb." else block[2]
            renamed = f"blocks.{index}.{part}{block[3]}"
        out[renamed] = tensor.float() if tensor.is_floating_point() else tensor
    return out


ROSINALITY_PARTS = {"conv.weight": "weight", "conv.modulation.weight": "affine.weight",
                    "conv.modulation.bias": "affine.bias", "noise.weight": "noise_strength",
                    "activate.bias": "bias", "bias": "bias"}
"""Parameter of a rosinality StyledConv / ToRGB → the NVLabs SynthesisLayer / ToRGBLayer one."""


def _rosinality_layer(name: str) -> tuple[str, str] | None:
    """(NVLabs layer, rosinality parameter) of a synthesis-layer tensor name, else None."""
    if match := re.fullmatch(r"(conv1|to_rgb1)\.(.+)", name):
        return f"synthesis.b4.{'conv1' if match[1] == 'conv1' else 'torgb'}", match[2]
    if match := re.fullmatch(r"convs\.(\d+)\.(.+)", name):
        index = int(match[1])
        return f"synthesis.b{2 ** (index // 2 + 3)}.conv{index % 2}", match[2]
    if match := re.fullmatch(r"to_rgbs\.(\d+)\.(.+)", name):
        return f"synthesis.b{2 ** (int(match[1]) + 3)}.torgb", match[2]
    return None


def rosinality_to_nvlabs(state: Mapping[str, torch.Tensor],
                         source: str) -> "OrderedDict[str, torch.Tensor]":
    """rosinality stylegan2-pytorch names and shapes → NVLabs names and shapes (``noises.noise_n``
    is the noise of layer n: b4.conv1, then conv0 / conv1 of b8, b16, …)."""
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    for name, tensor in state.items():
        layer = _rosinality_layer(name)
        if name.endswith(("blur.kernel", "upsample.kernel")):
            _check_fir(name, tensor, 4.0, source)
        elif match := re.fullmatch(r"style\.(\d+)\.(weight|bias)", name):
            out[f"mapping.fc{int(match[1]) - 1}.{match[2]}"] = tensor
        elif name == "input.input":
            out["synthesis.b4.const"] = tensor[0]
        elif match := re.fullmatch(r"noises\.noise_(\d+)", name):
            number = int(match[1])
            owner, _ = _rosinality_layer(f"convs.{number - 1}.noise" if number else "conv1.noise")
            out[f"{owner}.noise_const"] = tensor[0, 0]
        elif layer and layer[1] in ROSINALITY_PARTS:
            part = ROSINALITY_PARTS[layer[1]]
            reshape = {"weight": lambda t: t[0], "noise_strength": lambda t: t.reshape(()),
                       "bias": lambda t: t.flatten()}.get(part, lambda t: t)
            out[f"{layer[0]}.{part}"] = reshape(tensor)
        else:
            out[name] = tensor                 # reported by the strict check
    return out


def read_rosinality(path: Path) -> "OrderedDict[str, torch.Tensor]":
    """A rosinality ``.pt`` (weights only) in NVLabs names; ``mapping.w_avg`` from
    ``latent_avg`` when the file has it."""
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):   # train.py's "args"
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        refused = "Weights only load failed" in str(err)
        raise StyleGANCheckpointError(
            f"{path} " + ("holds pickled code or objects, not just tensors; refused without "
                          "running it" if refused else f"is not a valid checkpoint ({err})")
            + "; re-save the weights only: torch.save({'g_ema': g_ema.state_dict()}, path)"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise StyleGANCheckpointError(f"{path} is truncated or corrupt "
                                      f"({str(err).split('. ')[0] or type(err).__name__}); "
                                      "download or save it again") from None
    state = obj.get("g_ema", obj) if isinstance(obj, dict) else None
    if not (isinstance(state, dict) and "style.1.weight" in state):
        raise StyleGANCheckpointError(f"{path} is not a rosinality StyleGAN2 generator (no "
                                      "g_ema / style.1.weight); " + WHERE_TO_GET)
    tensors = rosinality_to_nvlabs(state, str(path))
    if isinstance(obj.get("latent_avg"), torch.Tensor):
        tensors["mapping.w_avg"] = obj["latent_avg"].flatten()
    return tensors


def _sizes(state: Mapping[str, torch.Tensor], source: str) -> dict[str, int]:
    """StyleGAN constructor sizes read off NVLabs-named tensors."""
    try:
        fc0 = state["mapping.fc0.weight"]
        sides = sorted(int(m[1]) for k in state
                       if (m := re.fullmatch(r"synthesis\.b(\d+)\.conv1\.weight", k)))
        widths = [state[f"synthesis.b{side}.conv1.weight"].shape[0] for side in sides]
    except KeyError as err:
        raise StyleGANCheckpointError(f"{source} lacks {err} and is not a StyleGAN2 generator; "
                                      + WHERE_TO_GET) from None
    layers = sum(bool(re.fullmatch(r"mapping\.fc\d+\.weight", k)) for k in state)
    base, top = (widths[-1] * sides[-1], max(widths)) if sides else (0, 0)
    if not sides or [channels(s, base, top) for s in sides] != widths:
        raise StyleGANCheckpointError(f"{source}: synthesis widths {widths} at {sides} px do not "
                                      "follow min(channel_max, channel_base / side); unsupported")
    return {"z_dim": fc0.shape[1], "w_dim": fc0.shape[0], "mapping_layers": layers,
            "resolution": sides[-1], "channel_base": base, "channel_max": top}


def _conv_clamp(attributes: Mapping[str, Mapping[str, Any]], source: str) -> float | None:
    """The generator's ``conv_clamp`` (one value for all layers), refusing what we lack."""
    top = attributes.get("", {})
    if top.get("c_dim", 0):
        raise StyleGANCheckpointError(f"{source} is a conditional generator (c_dim "
                                      f"{top['c_dim']}); only unconditional ones are supported")
    kinds = {a.get("architecture", "skip") for k, a in attributes.items()
             if re.fullmatch(r"synthesis\.b\d+\.", k)}
    if kinds - {"skip"}:
        raise StyleGANCheckpointError(f"{source}: synthesis architecture {sorted(kinds)}; only "
                                      "StyleGAN2's 'skip' generator is supported")
    clamps = {a.get("conv_clamp") for k, a in attributes.items()
              if re.search(r"\.(conv0|conv1|torgb)\.$", k)}
    if len(clamps) > 1:
        raise StyleGANCheckpointError(f"{source}: layers use different conv_clamp {clamps}; "
                                      "unsupported")
    return next(iter(clamps), None)


def import_stylegan(path: PathLike) -> StyleGAN:
    """The generator in ``path`` (``.pkl``: NVLabs, else rosinality ``.pt``) as a faithful
    :class:`StyleGAN`, in eval mode without gradients. Raises
    :class:`StyleGANCheckpointError` (one line) for a missing, unsafe or unfitting file."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise StyleGANCheckpointError(f"StyleGAN2 checkpoint {path} does not exist; "
                                      + WHERE_TO_GET)
    attributes: dict[str, dict[str, Any]] = {}
    if path.suffix == ".pkl":
        tensors, attributes = read_nvlabs_pickle(path)
    else:
        tensors = read_rosinality(path)
    sizes = _sizes(tensors, str(path))
    state = from_nvlabs_names(tensors, str(path))
    with torch.device("meta"):
        generator = StyleGAN(**sizes, faithful=True, conv_clamp=_conv_clamp(attributes,
                                                                           str(path)))
    if "w_avg" not in state:
        state["w_avg"] = torch.zeros(sizes["w_dim"])
    _check_names(generator.state_dict(), state, str(path))
    generator.load_state_dict(state, strict=True, assign=True)
    generator.eval().requires_grad_(False)
    if "mapping.w_avg" not in tensors:
        z = torch.randn(MEAN_LATENT_SAMPLES, generator.z_dim,
                        generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            generator.w_avg.copy_(generator.map(z)[:, 0].mean(0))
    return generator


def _check_names(expected: Mapping[str, torch.Tensor], found: Mapping[str, torch.Tensor],
                 source: str) -> None:
    """One line naming missing, unexpected and mis-shaped tensors (strict loading)."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    wrong = [k for k in expected if k in found and expected[k].shape != found[k].shape]
    problems = [f"{label} {keys[:4]}{' …' if len(keys) > 4 else ''}"
                for label, keys in (("missing", missing), ("unexpected", unexpected),
                                    ("mis-shaped", wrong)) if keys]
    if problems:
        raise StyleGANCheckpointError(f"{source} does not fit a StyleGAN2 synthesis ("
                                      f"{'; '.join(problems)}); " + WHERE_TO_GET)


def load_prior(ctx: AttackContext, cfg: CandidateSearchConfig) -> StyleGAN:
    """PPA's and IF-GMI's prior: the generator of ``cfg.stylegan_checkpoint`` when set, else
    our StyleGAN trained on the aux split (``load_stylegan``)."""
    if cfg.stylegan_checkpoint:
        return import_stylegan(cfg.stylegan_checkpoint).to(ctx.device)
    return load_stylegan(ctx, cfg)
