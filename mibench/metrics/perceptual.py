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

from mibench import precision
from mibench.metrics.base import MetricUnavailable, metric
from mibench.metrics.batching import evaluating
from mibench.metrics.context import EvalContext
from mibench.metrics.inception import HUB_CHECKPOINTS, hub_checkpoint

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
                                f"{ALEXNET_WEIGHTS} in {HUB_CHECKPOINTS} (not shipped by any "
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


def perceptual_embedding(net: nn.Module, images: torch.Tensor, size: tuple[int, int],
                         batch_size: int) -> torch.Tensor:
    """One vector per [0,1] image whose squared L2 distances are the LPIPS distances.

    LPIPS (Zhang et al., CVPR 2018, eq. 1) is Σ_l mean_hw Σ_c w_lc (â_lhwc − b̂_lhwc)² over the
    channel-normalised trunk features â, b̂ of the two images; with w ≥ 0 that is ‖U(a) − U(b)‖²
    for U = the concatenation over layers of â_l · √w_l / √(H_l W_l). So each image goes through
    the trunk once, instead of once per (generated, private) pair. Images are resized to
    ``size`` (antialiased) and scaled to [-1, 1] first.
    """
    weights = [lin.model[-1].weight.flatten() for lin in net.lins]
    if not net.lpips or net.spatial or any(bool((w < 0).any()) for w in weights):
        raise MetricUnavailable("this LPIPS network is not a non-negative linear head over "
                                "averaged features; cannot embed it (use lpips/stlpips alex)")
    if images.shape[-2:] != size:
        images = F.interpolate(images, size=size, mode="bilinear", align_corners=False,
                               antialias=True).clamp(0, 1)
    parts = []
    with evaluating(net):
        for batch in images.split(batch_size):
            x = batch * 2 - 1
            x = net.scaling_layer(x) if net.version == "0.1" else x
            with precision.autocast(x.device):
                trunk = net.net.forward(x)
            layers = []
            for feature, w in zip((f.float() for f in trunk), weights):
                unit = feature / (feature.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10)
                scale = w.sqrt()[None, :, None, None] / feature[0, 0].numel() ** 0.5
                layers.append((unit * scale).flatten(1))
            parts.append(torch.cat(layers, dim=1))
    return torch.cat(parts)


def nearest_distances(net: nn.Module, kind: str, ctx: EvalContext) -> torch.Tensor:
    """Per generated image of the root context ``ctx``, the minimum distance to its identity's
    private images (float64, on the CPU).

    Streams by identity: an identity's generated and private images are embedded on the
    device, compared and dropped, so one identity's embeddings are on the device at a time
    (ST-LPIPS keeps ~2 MB per image: 80 GB for a paper-scale cell if all are held; issue 17).
    Private embeddings are kept in fp32 on the CPU up to a budget and recomputed beyond it
    (:meth:`PrivateReference.held_features_of`), never stored in the cache: fp16 storage moved
    the metric by 2e-6 on seven images, and a paper-scale reference is 48 GB in fp32."""
    size = tuple(ctx.private.split.images.shape[-2:])

    def embed(images: torch.Tensor) -> torch.Tensor:
        return perceptual_embedding(net, images.to(ctx.device), size, ctx.batch_size)

    nearest = torch.empty(ctx.labels.shape[0], dtype=torch.float64)
    for label, index in ctx.by_identity():
        index = index.cpu()
        generated = embed(ctx.generated[index])
        private = ctx.private.held_features_of(kind, label, embed)
        distances = torch.cdist(generated.double(), private.double(),
                                compute_mode="donot_use_mm_for_euclid_dist").pow(2)
        nearest[index] = distances.min(dim=1).values.cpu()
    return nearest


def nearest_perceptual_distance(ctx: EvalContext, net: nn.Module, kind: str) -> float:
    """Mean over generated images of the minimum distance to their identity's private images.

    The per-image minima are computed once per image set (:func:`nearest_distances`); a subset
    takes its images' minima from them."""
    nearest = ctx.per_image(f"{kind}/nearest", lambda _: nearest_distances(net, kind, ctx.root))
    return nearest.sum().item() / nearest.shape[0]


@metric("lpips", "lower",
        "LPIPS (alex, [-1,1] inputs) to the nearest private-train image of the same identity",
        needs=("private_images", "alexnet_weights"))
def lpips_nearest(ctx: EvalContext) -> float:
    return nearest_perceptual_distance(ctx, load_lpips(ctx.device), "lpips")


@metric("st_lpips", "lower",
        "Shift-tolerant LPIPS (alex) to the nearest private-train image of the same identity",
        needs=("private_images", "st_lpips_weights"))
def st_lpips_nearest(ctx: EvalContext) -> float:
    return nearest_perceptual_distance(ctx, load_st_lpips(ctx.device), "st_lpips")
