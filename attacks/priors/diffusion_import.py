"""Import the official FGMIA prior (Lu et al., TIFS 2025; attacks.md §8.4) instead of training.

``knowonething/FGMIA_codes`` (``src/t55_FGDM_new``) samples with a diffusers
``DiffusionPipeline`` saved by ``save_pretrained`` (``huggingface.co/MMCT/FGMIA_Models``): a
folder with ``model_index.json``, ``scheduler/`` and ``unet/`` = ``config.json`` plus
``diffusion_pytorch_model.safetensors`` (or ``.bin``), the state dict of a
``UNet2DConditionModel`` in pixel space (3 channels, images in [−1, 1]) that predicts ε and
takes the target's L2-normalised feature, reshaped to ``(1, −1, 512)``, as
``encoder_hidden_states``. Our :class:`~mibench.attacks.priors.diffusion.ConditionalDenoiser`
holds the same diffusers UNet as ``unet``, so the mapping is the ``unet.`` prefix; its condition
statistics stay at mean 0 / std 1, so its context is the raw feature, as the pipeline feeds it.

``prior_checkpoint`` may name the pipeline folder, its ``unet/`` folder or a weights file
(``.safetensors`` read without pickle; ``.bin`` / ``.pt`` / ``.pth`` with
``torch.load(weights_only=True)``). The UNet's sizes come from ``config.json`` when there is one
(beside the file or in its folder), else from the FGMIA config fields; every other setting in
``config.json`` must equal the UNet we build (a different one would compute something else).
A pipeline folder's ``scheduler/scheduler_config.json`` must give the schedule we sample with
(linear β 1e-4 → 0.02 over 1,000 steps, ε-prediction: FGMIA_codes' ``DDIMScheduler``).
Loading is strict: missing, unexpected or mis-shaped tensors are one-line errors.
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from mibench.attacks.priors.diffusion import ConditionalDenoiser, noise_scheduler
from mibench.errors import MibenchError
from mibench.targets.strict import check_state_dict

WEIGHT_FILES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
CONFIG = "config.json"
UNET_CLASS = "UNet2DConditionModel"
PIXEL_CHANNELS = 3
SIZE_FIELDS = ("resolution", "block_channels", "attention", "layers_per_block", "token_dim",
               "head_dim")
WRAPPERS = ("module.", "unet.")
SCHEDULE_FIELDS = ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule",
                   "prediction_type")
WHERE_TO_GET = ("download an FGMIA prior folder (huggingface.co/MMCT/FGMIA_Models, e.g. "
                "FGDMs/Arcface18-FG) and set fgmia.prior_checkpoint to it")
PathLike = str | os.PathLike[str]


class DiffusionCheckpointError(MibenchError):
    """A diffusion prior checkpoint is missing, unsafe, corrupt, or does not fit our UNet."""


def locate(path: PathLike) -> tuple[Path, Path | None]:
    """(weights file, its ``config.json`` or None) of a pipeline folder, UNet folder or file."""
    path = Path(path).expanduser()
    if path.is_dir() and (path / "unet").is_dir():
        path = path / "unet"
    if path.is_dir():
        found = [path / name for name in WEIGHT_FILES if (path / name).is_file()]
        if not found:
            raise DiffusionCheckpointError(f"{path} holds none of {', '.join(WEIGHT_FILES)}; "
                                           f"{WHERE_TO_GET}")
        weights = found[0]
    elif path.is_file():
        weights = path
    else:
        raise DiffusionCheckpointError(f"FGMIA prior {path} does not exist; {WHERE_TO_GET}")
    config = weights.parent / CONFIG
    return weights, config if config.is_file() else None


def check_schedule(path: PathLike) -> None:
    """A pipeline folder's ``scheduler/scheduler_config.json`` must describe the noise schedule
    we sample with (:func:`~mibench.attacks.priors.diffusion.noise_scheduler`)."""
    file = Path(path).expanduser() / "scheduler" / "scheduler_config.json"
    if not file.is_file():
        return
    config = read_config(file, kind=None)
    ours = noise_scheduler(clip_sample=True).config
    differ = [f"{k} {config[k]!r} (ours {ours[k]!r})" for k in SCHEDULE_FIELDS
              if k in config and config[k] != ours[k]]
    if differ:
        raise DiffusionCheckpointError(f"{file}: the prior was trained with another noise "
                                       f"schedule: {', '.join(differ)}")


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """The state dict in ``path``: safetensors (no pickle) or ``torch.load(weights_only=True)``."""
    if path.suffix == ".safetensors":
        try:
            return load_file(path)
        except (SafetensorError, OSError) as err:
            raise DiffusionCheckpointError(f"{path} is not a readable safetensors file "
                                           f"({str(err).splitlines()[0]}); download it again") \
                from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        refused = "Weights only load failed" in str(err)
        reason = ("holds pickled code or objects, not just tensors; refused without running it"
                  if refused else f"is not a valid checkpoint ({str(err).splitlines()[0]})")
        raise DiffusionCheckpointError(f"{path} {reason}; {WHERE_TO_GET}") from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError) as err:
        detail = str(err).split(". ")[0] or type(err).__name__
        raise DiffusionCheckpointError(f"{path} is not a PyTorch or safetensors checkpoint "
                                       f"({detail}); {WHERE_TO_GET}") from None
    if not (isinstance(state, Mapping) and state
            and all(isinstance(v, torch.Tensor) for v in state.values())):
        raise DiffusionCheckpointError(f"{path} is not a UNet state dict (a flat mapping of "
                                       f"tensors); {WHERE_TO_GET}")
    return dict(state)


def read_config(path: Path, kind: str | None = UNET_CLASS) -> dict[str, Any]:
    """A diffusers JSON config; with ``kind``, it must describe that class (if it names one)."""
    try:
        config = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DiffusionCheckpointError(f"{path} is not a diffusers config ({err})") from None
    if not isinstance(config, dict):
        raise DiffusionCheckpointError(f"{path} is not a diffusers config (a JSON object)")
    named = config.get("_class_name", kind)
    if kind and named != kind:
        raise DiffusionCheckpointError(f"{path} describes a {named}; the FGMIA prior is a "
                                       f"{kind} (the condition enters by cross-attention)")
    return config


def sizes_from_config(config: Mapping[str, Any], source: Path) -> dict[str, Any]:
    """Our :data:`SIZE_FIELDS` from a diffusers ``UNet2DConditionModel`` config."""
    side = config.get("sample_size", 0)
    sides = set(side) if isinstance(side, list) else {side}
    if len(sides) != 1:
        raise DiffusionCheckpointError(f"{source}: sample_size {side} is not square; mibench "
                                       "samples square images")
    channels = (config.get("in_channels"), config.get("out_channels"))
    if channels != (PIXEL_CHANNELS, PIXEL_CHANNELS):
        raise DiffusionCheckpointError(f"{source}: in/out channels {channels}; the FGMIA "
                                       "prior denoises RGB pixels (3, 3)")
    down = list(config.get("down_block_types", ()))
    unknown = sorted(set(down) - {"CrossAttnDownBlock2D", "DownBlock2D"})
    if unknown:
        raise DiffusionCheckpointError(f"{source}: down blocks {unknown} are not "
                                       "CrossAttnDownBlock2D / DownBlock2D")
    heads = config.get("attention_head_dim", 8)
    return {"resolution": int(sides.pop()), "block_channels": tuple(config["block_out_channels"]),
            "attention": tuple(kind == "CrossAttnDownBlock2D" for kind in down),
            "layers_per_block": int(config["layers_per_block"]),
            "token_dim": int(config["cross_attention_dim"]),
            "head_dim": int(heads[0] if isinstance(heads, list) else heads)}


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, (tuple, list)) else value


def check_config(config: Mapping[str, Any], denoiser: ConditionalDenoiser, source: Path) -> None:
    """Every setting of ``config`` that our UNet also has must have the same value."""
    ours = denoiser.unet.config
    differ = sorted(k for k in config if not k.startswith("_") and k != "sample_size"
                    and k in ours and _plain(config[k]) != _plain(ours[k]))
    if differ:
        shown = ", ".join(f"{k} {config[k]!r} (ours {ours[k]!r})" for k in differ[:4])
        raise DiffusionCheckpointError(f"{source}: {len(differ)} UNet settings differ from "
                                       f"the FGMIA UNet mibench builds: {shown}")


def unwrapped(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` without ``module.`` / ``unet.`` prefixes that every key carries."""
    keys = list(state)
    for prefix in WRAPPERS:
        if keys and all(k.startswith(prefix) for k in keys):
            keys = [k[len(prefix):] for k in keys]
    return dict(zip(keys, state.values(), strict=True))


def import_fgmia_unet(path: PathLike, condition_dim: int,
                      fallback: Mapping[str, Any]) -> ConditionalDenoiser:
    """The official FGMIA UNet at ``path`` as our denoiser over ``condition_dim``-d conditions
    (sizes from its ``config.json``, else ``fallback``: the FGMIA config's :data:`SIZE_FIELDS`)."""
    check_schedule(path)
    weights, config_path = locate(path)
    config = read_config(config_path) if config_path else None
    sizes = sizes_from_config(config, config_path) if config and config_path \
        else {k: fallback[k] for k in SIZE_FIELDS}
    if condition_dim % sizes["token_dim"]:
        raise DiffusionCheckpointError(
            f"{weights}: {condition_dim}-d target features do not cut into tokens of "
            f"{sizes['token_dim']} (cross_attention_dim), as the official pipeline reshapes them")
    denoiser = ConditionalDenoiser(
        sample_size=sizes["resolution"], channels=PIXEL_CHANNELS, condition_dim=condition_dim,
        block_channels=sizes["block_channels"], attention=sizes["attention"],
        layers_per_block=sizes["layers_per_block"], token_dim=sizes["token_dim"],
        head_dim=sizes["head_dim"])
    if config and config_path:
        check_config(config, denoiser, config_path)
    state = unwrapped(read_weights(weights))
    check_state_dict(denoiser.unet.state_dict(), state, str(weights),
                     error=DiffusionCheckpointError, network="the FGMIA UNet",
                     hint=f"check its config.json or the fgmia {', '.join(SIZE_FIELDS)} fields")
    denoiser.unet.load_state_dict(state, strict=True)
    return denoiser
