"""Import an official Diff-MI / guided-diffusion ADM UNet state dict onto :class:`ClassDenoiser`.

The file is what guided-diffusion's ``TrainLoop`` saves (``ema_0.9999_050000.pt``: a bare state
dict of ``UNetModel``; Diff-MI's pre-training and fine-tuning keep that layout), read with
``torch.load(weights_only=True)``. ADM's keys (guided-diffusion ``unet.py``) map to diffusers':

- ``time_embed.{0,2}`` → ``time_embedding.linear_{1,2}``, ``label_emb`` → ``class_embedding``;
- ``input_blocks.0.0`` → ``conv_in``; then per level, ``layers_per_block`` entries of a ResBlock
  (``.0``) and, at attention levels, an AttentionBlock (``.1``), then (not after the last level)
  one ``Downsample`` entry (``.0.op``) → ``down_blocks.<level>.{resnets,attentions}.<i>``,
  ``downsamplers.0.conv``;
- ``middle_block.{0,1,2}`` → ``mid_block.resnets.0``, ``attentions.0``, ``resnets.1``;
- ``output_blocks``: per level from the deepest, ``layers_per_block + 1`` entries of a ResBlock
  (``.0``), an AttentionBlock (``.1``) at attention levels, and on each level's last entry but
  the top's an ``Upsample`` (``.1`` or ``.2``, ``.conv``) → ``up_blocks.<u>...``;
- ``out.{0,2}`` → ``conv_norm_out``, ``conv_out``.

A ResBlock's ``in_layers.0`` / ``in_layers.2`` / ``emb_layers.1`` / ``out_layers.0`` /
``out_layers.3`` / ``skip_connection`` are ``norm1`` / ``conv1`` / ``time_emb_proj`` / ``norm2`` /
``conv2`` / ``conv_shortcut``. An AttentionBlock's ``norm`` is ``group_norm``; its 1×1 Conv1d
``qkv`` (3C×C×1) holds, in the legacy order Diff-MI uses (``use_new_attention_order=False``),
per head h the rows [q_h, k_h, v_h] of C/H each: they are regrouped into ``to_q`` / ``to_k`` /
``to_v``; ``proj_out`` is ``to_out.0``. A ``learn_sigma`` output (2·channels rows of
``out.2``) keeps its ε half. Loading is strict: a missing, unexpected or mis-shaped tensor is a
one-line error naming it.
"""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path
from typing import Mapping

import torch

from mibench.attacks.priors.class_diffusion import ClassDenoiser
from mibench.errors import MibenchError

RESBLOCK = {"in_layers.0": "norm1", "in_layers.2": "conv1", "emb_layers.1": "time_emb_proj",
            "out_layers.0": "norm2", "out_layers.3": "conv2", "skip_connection": "conv_shortcut"}


class ADMCheckpointError(MibenchError):
    """An ADM checkpoint that cannot be read or does not fit the configured UNet."""


def module_map(denoiser: ClassDenoiser) -> dict[str, tuple[str, str]]:
    """ADM module prefix → (diffusers module prefix, kind) for ``denoiser``'s UNet, kind one of
    ``plain`` (same tensor names), ``resblock``, ``attention``."""
    unet = denoiser.unet
    found = {"time_embed.0": ("time_embedding.linear_1", "plain"),
             "time_embed.2": ("time_embedding.linear_2", "plain"),
             "label_emb": ("class_embedding", "plain"),
             "input_blocks.0.0": ("conv_in", "plain"),
             "out.0": ("conv_norm_out", "plain"), "out.2": ("conv_out", "plain"),
             "middle_block.0": ("mid_block.resnets.0", "resblock"),
             "middle_block.1": ("mid_block.attentions.0", "attention"),
             "middle_block.2": ("mid_block.resnets.1", "resblock")}
    index = 1
    for level, block in enumerate(unet.down_blocks):
        for i in range(len(block.resnets)):
            found[f"input_blocks.{index}.0"] = (f"down_blocks.{level}.resnets.{i}", "resblock")
            if hasattr(block, "attentions"):
                found[f"input_blocks.{index}.1"] = (f"down_blocks.{level}.attentions.{i}",
                                                    "attention")
            index += 1
        if block.downsamplers:
            found[f"input_blocks.{index}.0.op"] = (f"down_blocks.{level}.downsamplers.0.conv",
                                                   "plain")
            index += 1
    index = 0
    for level, block in enumerate(unet.up_blocks):
        for i in range(len(block.resnets)):
            found[f"output_blocks.{index}.0"] = (f"up_blocks.{level}.resnets.{i}", "resblock")
            attention = hasattr(block, "attentions")
            if attention:
                found[f"output_blocks.{index}.1"] = (f"up_blocks.{level}.attentions.{i}",
                                                     "attention")
            if block.upsamplers and i == len(block.resnets) - 1:
                found[f"output_blocks.{index}.{1 + attention}.conv"] = (
                    f"up_blocks.{level}.upsamplers.0.conv", "plain")
            index += 1
    return found


def _split_qkv(weight: torch.Tensor, heads: int) -> list[torch.Tensor]:
    """Legacy-order ``qkv`` rows (per head q, k, v) → [q, k, v], heads kept in order."""
    channels = weight.shape[0] // 3
    grouped = weight.reshape(heads, 3, channels // heads, *weight.shape[1:])
    return [grouped[:, j].reshape(channels, *weight.shape[1:]) for j in range(3)]


def convert(state: Mapping[str, torch.Tensor], denoiser: ClassDenoiser) -> dict[str, torch.Tensor]:
    """``state`` (ADM names) renamed and reshaped to ``denoiser.unet``'s state dict names."""
    modules = module_map(denoiser)
    heads = denoiser.num_heads
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        prefix, _, leaf = key.rpartition(".")
        match = next((m for m in (prefix, *_prefixes(prefix)) if m in modules), None)
        if match is None:
            raise ADMCheckpointError(f"unexpected tensor {key} for this UNet (check "
                                     f"block_channels, attention and layers_per_block)")
        target, kind = modules[match]
        rest = prefix[len(match):].lstrip(".")
        if kind == "plain" and not rest:
            out[f"{target}.{leaf}"] = value
        elif kind == "resblock" and rest in RESBLOCK:
            out[f"{target}.{RESBLOCK[rest]}.{leaf}"] = value
        elif kind == "attention" and rest == "qkv":
            for name, part in zip(("to_q", "to_k", "to_v"), _split_qkv(value, heads)):
                out[f"{target}.{name}.{leaf}"] = part.squeeze(-1)
        elif kind == "attention" and rest in ("norm", "proj_out"):
            name = "group_norm" if rest == "norm" else "to_out.0"
            out[f"{target}.{name}.{leaf}"] = value.squeeze(-1) if value.ndim == 3 else value
        else:
            raise ADMCheckpointError(f"unexpected tensor {key} in an ADM {kind}")
    channels = denoiser.channels
    for leaf in ("weight", "bias"):
        key = f"conv_out.{leaf}"
        if key in out and out[key].shape[0] == 2 * channels:   # learn_sigma: keep ε
            out[key] = out[key][:channels]
    return out


def _prefixes(prefix: str) -> list[str]:
    """``prefix``'s proper dotted prefixes, longest first."""
    parts = prefix.split(".")
    return [".".join(parts[:n]) for n in range(len(parts) - 1, 0, -1)]


def load_adm(path: str | Path, denoiser: ClassDenoiser) -> ClassDenoiser:
    """``denoiser`` with the weights of the ADM checkpoint at ``path`` (strict)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as error:
        raise ADMCheckpointError(f"{path} is not a readable ADM state dict "
                                 f"({str(error).splitlines()[0]})") from error
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor)
                                                 for v in state.values()):
        raise ADMCheckpointError(f"{path} is not a state dict of tensors (save the UNet's "
                                 "state_dict(), as guided-diffusion's TrainLoop does)")
    rows = state.get("label_emb.weight")
    if rows is not None and len(rows) != denoiser.num_classes + 1:
        raise ADMCheckpointError(f"{path} has {len(rows)} label rows; the target has "
                                 f"{denoiser.num_classes} classes + the null label")
    converted = convert(state, denoiser)
    expected = denoiser.unet.state_dict()
    missing = sorted(set(expected) - set(converted))
    if missing:
        raise ADMCheckpointError(f"{path} lacks {len(missing)} tensors of this UNet, e.g. "
                                 f"{missing[0]} (check block_channels, attention, "
                                 f"layers_per_block)")
    for key, value in converted.items():
        if value.shape != expected[key].shape:
            raise ADMCheckpointError(f"{path}: {key} has shape {tuple(value.shape)}, this UNet "
                                     f"{tuple(expected[key].shape)}")
    denoiser.unet.load_state_dict(converted, strict=True)
    return denoiser


def checkpoint_digest(path: str | Path) -> str:
    """SHA-256 of the checkpoint file (the fine-tuned prior's cache key names its start)."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError as error:
        raise ADMCheckpointError(f"cannot read the ADM checkpoint {path} ({error.strerror})"
                                 ) from error
    return digest.hexdigest()
