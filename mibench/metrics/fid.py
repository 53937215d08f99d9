"""Fréchet Inception Distance between generated images and their identities' private images.

Convention (attacks.md §A.4): pytorch-fid's InceptionV3 pool3 (2048-d) features; the real set is
the private-train images of the attacked identities, the fake set every generated image. Images
enter Inception exactly once as [0,1] tensors and pytorch-fid does its own resize to 299 and
scaling to [-1,1] (PPA normalised twice, FGMIA fed [-1,1] into a [0,1] FID; anchors.md §5).
FID is biased upwards for small sets; at least :data:`MIN_IMAGES` per set are required for a
covariance at all.
"""

from __future__ import annotations

import torch
from torch import nn

from mibench import precision
from mibench.batching import in_batches
from mibench.metrics.base import FeatureSets, Measured, MetricUnavailable, set_metric
from mibench.metrics.batching import evaluating, module_device
from mibench.metrics.context import EvalContext, check_images
from mibench.metrics.inception import load_fid_inception

MIN_IMAGES = 2
CPU_BATCH = 16  # 299-px activations of smaller batches stay in cache: ~10 % faster than 64


def inception_features(model: nn.Module, images: torch.Tensor, batch_size: int) -> torch.Tensor:
    """N×2048 pool3 features (float64) of [0,1] images, on the model's device; only the
    network forward runs under the run's autocast, its features are float32 per batch."""
    check_images(images, "FID inputs")
    device = module_device(model)

    def forward(x: torch.Tensor) -> torch.Tensor:
        with precision.autocast(device):
            pooled = model(x.contiguous(memory_format=torch.channels_last))[0]
        return pooled.flatten(1).float()

    with evaluating(model):
        features = in_batches(forward, images, device, batch_size)
    return features.double()


def inner_products(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a bᵀ`` in float64 (rows are samples)."""
    return a.double() @ b.double().t()


def frechet_distance(a: torch.Tensor, b: torch.Tensor,
                     cross: torch.Tensor | None = None) -> float:
    """Fréchet distance of Gaussians fitted to two feature sets (rows are samples).

    ``|μa-μb|² + tr Σa + tr Σb - 2 tr (Σa Σb)^½`` with unbiased covariances. The trace term is
    computed exactly from the centred data A, B: the eigenvalues of Σa Σb are the squared
    singular values of A Bᵀ / √((na-1)(nb-1)), and A Bᵀ is the double-centred matrix of inner
    products ``cross`` = a bᵀ (given when already computed: the half-sample intervals slice one
    matrix for every resample). No matrix square root, so no imaginary parts to discard and no
    ε-offset for the singular covariances of small sets (pytorch-fid's
    ``calculate_frechet_distance`` needs both).
    """
    for name, x in (("first", a), ("second", b)):
        if x.ndim != 2 or x.shape[0] < MIN_IMAGES:
            raise ValueError(f"the {name} feature set must be n×d with n ≥ {MIN_IMAGES}, "
                             f"got {tuple(x.shape)}")
    a, b = a.double(), b.double()
    cross = inner_products(a, b) if cross is None else cross.double()
    mean_a, mean_b = a.mean(dim=0), b.mean(dim=0)
    scale_a, scale_b = a.shape[0] - 1, b.shape[0] - 1
    centred_cross = (cross - cross.mean(dim=1, keepdim=True) - cross.mean(dim=0, keepdim=True)
                     + cross.mean())
    trace_sqrt = torch.linalg.svdvals(centred_cross).sum() / (scale_a * scale_b) ** 0.5
    value = ((mean_a - mean_b).square().sum()
             + (a - mean_a).square().sum() / scale_a + (b - mean_b).square().sum() / scale_b
             - 2 * trace_sqrt)
    return max(value.item(), 0.0)  # exact arithmetic is ≥ 0; clip rounding below zero


def inception_sets(ctx: EvalContext) -> FeatureSets:
    """Inception features of the generated images and of the attacked identities' private
    images, with their identities; each computed once and shared by FID and KID."""
    counts = [int(ctx.private.indices_of(label).numel()) for label in ctx.identities]
    check_sizes(ctx.generated.shape[0], sum(counts), "FID/KID")
    model = load_fid_inception(ctx.device)

    batch = ctx.batch_size if ctx.device.type == "cuda" else min(ctx.batch_size, CPU_BATCH)

    def embed(images: torch.Tensor) -> torch.Tensor:
        return inception_features(model, images, batch)

    private_labels = torch.tensor(ctx.identities).repeat_interleave(torch.tensor(counts))
    return FeatureSets(ctx.per_image("inception", embed), ctx.labels.cpu(),
                       ctx.private.features_of("inception", ctx.identities, embed),
                       private_labels)


def check_sizes(fake: int, real: int, what: str) -> None:
    """Both sets must have at least :data:`MIN_IMAGES` images."""
    if min(fake, real) < MIN_IMAGES:
        raise MetricUnavailable(f"{what} needs at least {MIN_IMAGES} images per set; got "
                                f"{fake} generated and {real} private")


@set_metric("fid", "lower",
            "Fréchet Inception Distance (pytorch-fid pool3) to the attacked identities' private "
            "images", needs=("inception_weights", "private_images"), sets=inception_sets)
def fid(sets: FeatureSets) -> Measured:
    check_sizes(sets.generated.shape[0], sets.private.shape[0], "FID")
    cross = sets.pairwise("inner", "gp", inner_products)
    return Measured(frechet_distance(sets.generated, sets.private, cross),
                    {"generated": sets.generated.shape[0], "private": sets.private.shape[0]})
