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


def polynomial_kernel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``(a bᵀ / d + 1)³`` in float64 (d = the feature dimension)."""
    a, b = a.double(), b.double()
    return (a @ b.t() / a.shape[1] + 1.0).pow(3)


def subset_mmd2(k_xx: torch.Tensor, k_yy: torch.Tensor, k_xy: torch.Tensor,
                x_index: torch.Tensor, y_index: torch.Tensor) -> torch.Tensor:
    """The unbiased MMD² of each subset (rows of ``x_index`` and ``y_index``, S×m each).

    ``Σ_{i≠j} k(xi,xj) / m(m-1) + Σ_{i≠j} k(yi,yj) / m(m-1) - 2 Σ_{i,j} k(xi,yj) / m²``, each
    sum over a subset's kernel block as ``vᵀ K w`` with the subsets' 0/1 row indicators v, w:
    S×n matrix products instead of gathering S blocks of m² entries."""
    m = x_index.shape[1]
    in_x = indicators(x_index, k_xx.shape[0], k_xx)
    in_y = indicators(y_index, k_yy.shape[0], k_yy)
    off_x = ((in_x @ k_xx) * in_x).sum(1) - in_x @ k_xx.diagonal()
    off_y = ((in_y @ k_yy) * in_y).sum(1) - in_y @ k_yy.diagonal()
    between = ((in_x @ k_xy) * in_y).sum(1)
    return (off_x + off_y) / (m * (m - 1)) - 2 * between / (m * m)


def indicators(index: torch.Tensor, n: int, like: torch.Tensor) -> torch.Tensor:
    """S×n 0/1 rows marking each row of ``index`` (S×m distinct indices below ``n``)."""
    rows = torch.zeros(index.shape[0], n, dtype=like.dtype, device=like.device)
    return rows.scatter_(1, index.to(like.device), 1.0)


def kernel_inception_distance(x: torch.Tensor, y: torch.Tensor, *, subsets: int = SUBSETS,
                              subset_size: int = SUBSET_SIZE, seed: int = SUBSET_SEED,
                              kernels: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None
                              = None) -> tuple[float, float, int]:
    """(mean, std over subsets, subset size) of the unbiased MMD² of feature sets ``x``, ``y``
    (rows are samples); subsets of min(``subset_size``, |x|, |y|) rows of each, seeded.
    ``kernels`` are (k_xx, k_yy, k_xy) when already computed."""
    m = min(subset_size, x.shape[0], y.shape[0])
    if m < 2:
        raise ValueError(f"KID needs at least 2 samples per set, got {x.shape[0]} and "
                         f"{y.shape[0]}")
    generator = torch.Generator().manual_seed(seed)
    x_index = torch.rand(subsets, x.shape[0], generator=generator).argsort(dim=1)[:, :m]
    y_index = torch.rand(subsets, y.shape[0], generator=generator).argsort(dim=1)[:, :m]
    if kernels is None:
        kernels = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    values = subset_mmd2(*kernels, x_index, y_index)
    std = values.std().item() if subsets > 1 else 0.0
    return values.mean().item(), std, m


@set_metric("kid", "lower",
            "Kernel Inception Distance (unbiased MMD², cubic kernel, pool3) to the identities' "
            "private images", needs=("inception_weights", "private_images"), sets=inception_sets)
def kid(sets: FeatureSets) -> Measured:
    fake, real = sets.generated, sets.private
    check_sizes(fake.shape[0], real.shape[0], "KID")
    kernels = (sets.pairwise("cubic", "gg", polynomial_kernel),
               sets.pairwise("cubic", "pp", polynomial_kernel),
               sets.pairwise("cubic", "gp", polynomial_kernel))
    mean, std, size = kernel_inception_distance(fake, real, kernels=kernels)
    return Measured(mean, {"generated": fake.shape[0], "private": real.shape[0],
                           "subset_size": size, "subsets": SUBSETS, "std": std})
