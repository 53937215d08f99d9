"""LPIPS to the nearest private image of the intended identity.

Convention: for each generated image the **minimum** LPIPS (AlexNet) over the private-train
images of its identity, averaged over images, with both inputs scaled from [0,1] to [-1,1].
Diff-MI's ``calc_lpips`` fed [0,1] tensors without ``normalize`` and kept the *maximum*
(attacks.md §A.4); FGMIA compared against one enrolled image only.

Standard LPIPS needs torchvision's ImageNet AlexNet (``alexnet-owt-7be5be79.pth``) in the torch
hub cache; the ``lpips`` wheel ships only the linear heads. Without it the suite reports
ST-LPIPS (shift-tolerant LPIPS, ECCV'22, ``stlpips-pytorch==0.0.2``, whose wheel ships trunk and
heads) under its own name, ``st_lpips``: the two scales differ and are never mixed.
Generated images are compared at the private images' resolution (antialiased resize).
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from mibench.metrics.base import MetricUnavailable, metric
from mibench.metrics.batching import evaluating
from mibench.metrics.context import EvalContext
from mibench.metrics.inception import hub_checkpoint

ALEXNET_WEIGHTS = "alexnet-owt-7be5be79.pth"
ST_LPIPS_PACKAGE = "stlpips_pytorch"
ST_LPIPS_WEIGHTS = Path("weights") / "vST0.0" / "alex_shift_tolerant.pth"

_loaded: dict[tuple[str, str], nn.Module] = {}


def standard_lpips_available() -> bool:
    return hub_checkpoint(ALEXNET_WEIGHTS).is_file()


def load_lpips(device: torch.device) -> nn.Module:
    """Standard LPIPS (alex, v0.1) on ``device``, or the reason it is unavailable."""
    alexnet = hub_checkpoint(ALEXNET_WEIGHTS)
    if not alexnet.is_file():
        raise MetricUnavailable(f"standard LPIPS needs torchvision's ImageNet AlexNet weights "
                                f"{ALEXNET_WEIGHTS} in {alexnet.parent} (not shipped by any "
                                f"package; st_lpips is reported instead)")
    key = ("lpips", str(device))
    if key not in _loaded:
        import lpips

        _loaded[key] = lpips.LPIPS(net="alex", verbose=False).to(device)  # reads the cached file
    return _loaded[key]


def _import_st_lpips() -> types.ModuleType:
    """``stlpips_pytorch.stlpips`` (it imports ``IPython.embed`` unused: stub IPython if absent)."""
    spec = importlib.util.find_spec(ST_LPIPS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise MetricUnavailable("st_lpips needs `pip install --no-deps stlpips-pytorch==0.0.2` "
                                "(its wheel ships the ST-LPIPS weights)")
    if importlib.util.find_spec("torchsummary") is None:
        raise MetricUnavailable("stlpips-pytorch imports torchsummary: `pip install torchsummary`")
    if "IPython" in sys.modules or importlib.util.find_spec("IPython") is not None:
        return importlib.import_module(f"{ST_LPIPS_PACKAGE}.stlpips")
    # Stub only while importing: left in sys.modules, it would fool matplotlib's IPython probe.
    stub = types.ModuleType("IPython", "stub: stlpips-pytorch imports IPython.embed unused")
    stub.embed = lambda *args, **kwargs: None  # type: ignore[attr-defined]
    sys.modules["IPython"] = stub
    try:
        return importlib.import_module(f"{ST_LPIPS_PACKAGE}.stlpips")
    finally:
        if sys.modules.get("IPython") is stub:
            del sys.modules["IPython"]


def load_st_lpips(device: torch.device) -> nn.Module:
    """ST-LPIPS (alex, shift-tolerant) on ``device``, or the reason it is unavailable."""
    stlpips = _import_st_lpips()
    weights = Path(stlpips.__file__).parent / ST_LPIPS_WEIGHTS
    if not weights.is_file():
        raise MetricUnavailable(f"st_lpips weights {weights} are missing; reinstall "
                                f"stlpips-pytorch==0.0.2")
    key = ("st_lpips", str(device))
    if key in _loaded:
        return _loaded[key]
    net = stlpips.LPIPS(pretrained=False, net="alex", variant="shift_tolerant", verbose=False)
    # The package loads with strict=False; load ourselves and allow only the ``lins.*`` aliases.
    missing, unexpected = net.load_state_dict(torch.load(weights, map_location="cpu"),
                                              strict=False)
    if unexpected or any(not name.startswith("lins.") for name in missing):
        raise MetricUnavailable(f"{weights} does not fit ST-LPIPS alex: missing {missing}, "
                                f"unexpected {unexpected}")
    _loaded[key] = net.eval().requires_grad_(False).to(device)
    return _loaded[key]


def perceptual_distances(net: nn.Module, images: torch.Tensor, references: torch.Tensor,
                         batch_size: int) -> torch.Tensor:
    """|images|×|references| LPIPS-style distances of [0,1] images (scaled to [-1,1] here)."""
    if images.shape[-2:] != references.shape[-2:]:
        images = F.interpolate(images, size=references.shape[-2:], mode="bilinear",
                               align_corners=False, antialias=True).clamp(0, 1)
    g, p = images.shape[0], references.shape[0]
    pairs = torch.arange(g * p, device=images.device)
    with evaluating(net):
        out = torch.cat([net(images[chunk // p] * 2 - 1, references[chunk % p] * 2 - 1).flatten()
                         for chunk in pairs.split(batch_size)])
    return out.view(g, p)


def nearest_perceptual_distance(ctx: EvalContext, net: nn.Module) -> float:
    """Mean over generated images of the minimum distance to their identity's private images."""
    total = 0.0
    for label, index in ctx.by_identity():
        images = ctx.generated[index.to(ctx.generated.device)].to(ctx.device)
        distances = perceptual_distances(net, images, ctx.private.images_of(label), ctx.batch_size)
        total += distances.min(dim=1).values.double().sum().item()
    return total / ctx.labels.shape[0]


@metric("lpips", "lower",
        "LPIPS (alex, [-1,1] inputs) to the nearest private-train image of the same identity",
        needs=("private_images", "alexnet_weights"))
def lpips_nearest(ctx: EvalContext) -> float:
    return nearest_perceptual_distance(ctx, load_lpips(ctx.device))


@metric("st_lpips", "lower",
        "Shift-tolerant LPIPS (alex) to the nearest private-train image of the same identity",
        needs=("private_images", "st_lpips_weights"))
def st_lpips_nearest(ctx: EvalContext) -> float:
    return nearest_perceptual_distance(ctx, load_st_lpips(ctx.device))
