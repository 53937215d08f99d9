"""Kernel Inception Distance between generated images and their identities' private images.

KID (Bińkowski et al., "Demystifying MMD GANs", ICLR 2018, §4 and appendix) is the unbiased
estimate of the squared maximum mean discrepancy with the cubic polynomial kernel
``k(x, y) = (xᵀy / d + 1)³`` in the same pytorch-fid pool3 features as FID (shared with it,
:func:`mibench.metrics.fid.inception_sets`). Unlike FID it is unbiased at any sample size, so it
is the distribution metric that means something for the few images of a ``mini`` cell. As in
the paper (and torchmetrics), the value is the mean over :data:`SUBSETS` random subsets of
:data:`SUBSET_SIZE` images of each set (fewer when a set is smaller: then the whole smaller set
enters every subset), drawn without replacement with a fixed seed; the report shows the std over
subsets and the sample counts beside it.
"""

from __future__ import annotations

import torch

from mibench.metrics.base import FeatureSets, Measured, set_metric
from mibench.metrics.fid import check_sizes, inception_sets

SUBSETS = 100          # Bińkowski et al.'s and torchmetrics' number of subsets
SUBSET_SIZE = 1000     # Bińkowski et al.'s and torchmetrics' subset size
SUBSET_SEED = 0        # ours: the subsets are drawn reproducibly
CHUNK_ELEMENTS = 2**22  # kernel entries gathered at once (32 MB of float64)


def polynomial_kernel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``(a bᵀ / d + 1)³`` in float64 (d = the feature dimension)."""
    a, b = a.double(), b.double()
    return (a @ b.t() / a.shape[1] + 1.0).pow(3)


def subset_mmd2(k_xx: torch.Tensor, k_yy: torch.Tensor, k_xy: torch.Tensor,
                x_index: torch.Tensor, y_index: torch.Tensor) -> torch.Tensor:
    """The unbiased MMD² of each subset (rows of ``x_index`` and ``y_index``, S×m each).

    ``Σ_{i≠j} k(xi,xj) / m(m-1) + Σ_{i≠j} k(yi,yj) / m(m-1) - 2 Σ_{i,j} k(xi,yj) / m²``.
    """
    m = x_index.shape[1]
    chunk = max(1, CHUNK_ELEMENTS // (m * m))
    values = []
    for xs, ys in zip(x_index.split(chunk), y_index.split(chunk)):
        xs, ys = xs.to(k_xx.device), ys.to(k_xx.device)
        within_x = k_xx[xs[:, :, None], xs[:, None, :]]
        within_y = k_yy[ys[:, :, None], ys[:, None, :]]
        between = k_xy[xs[:, :, None], ys[:, None, :]]
        off_x = within_x.sum((1, 2)) - within_x.diagonal(dim1=1, dim2=2).sum(1)
        off_y = within_y.sum((1, 2)) - within_y.diagonal(dim1=1, dim2=2).sum(1)
        values.append((off_x + off_y) / (m * (m - 1)) - 2 * between.sum((1, 2)) / (m * m))
    return torch.cat(values)


def kernel_inception_distance(x: torch.Tensor, y: torch.Tensor, *, subsets: int = SUBSETS,
                              subset_size: int = SUBSET_SIZE,
                              seed: int = SUBSET_SEED) -> tuple[float, float, int]:
    """(mean, std over subsets, subset size) of the unbiased MMD² of feature sets ``x``, ``y``
    (rows are samples); subsets of min(``subset_size``, |x|, |y|) rows of each, seeded."""
    m = min(subset_size, x.shape[0], y.shape[0])
    if m < 2:
        raise ValueError(f"KID needs at least 2 samples per set, got {x.shape[0]} and "
                         f"{y.shape[0]}")
    generator = torch.Generator().manual_seed(seed)
    x_index = torch.rand(subsets, x.shape[0], generator=generator).argsort(dim=1)[:, :m]
    y_index = torch.rand(subsets, y.shape[0], generator=generator).argsort(dim=1)[:, :m]
    values = subset_mmd2(polynomial_kernel(x, x), polynomial_kernel(y, y),
                         polynomial_kernel(x, y), x_index, y_index)
    std = values.std().item() if subsets > 1 else 0.0
    return values.mean().item(), std, m


@set_metric("kid", "lower",
            "Kernel Inception Distance (unbiased MMD², cubic kernel, pool3) to the identities' "
            "private images", needs=("inception_weights", "private_images"), sets=inception_sets)
def kid(sets: FeatureSets) -> Measured:
    fake, real = sets.generated, sets.private
    check_sizes(fake.shape[0], real.shape[0], "KID")
    mean, std, size = kernel_inception_distance(fake, real)
    return Measured(mean, {"generated": fake.shape[0], "private": real.shape[0],
                           "subset_size": size, "subsets": SUBSETS, "std": std})
