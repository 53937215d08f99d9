"""StyleGAN2's FIR resampling (Karras et al., CVPR 2020, App. B; upfirdn2d in NVLabs' code).

Up-sampling ×2 is zero insertion followed by the separable low-pass filter [1, 3, 3, 1]
(normalised to sum 1, gain 4 so the mean is kept). Both uses are written as transposed
convolutions, which is exactly that: the RGB skip image (:func:`fir_upsample`) and the
up-sampling 3×3 convolution, a stride-2 transposed convolution blurred by the filter
(:func:`upsample_conv`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

FIR_TAPS = (1.0, 3.0, 3.0, 1.0)
UP = 2


def fir_kernel(channels: int, like: torch.Tensor) -> torch.Tensor:
    """The depthwise 4×4 filter (channels × 1 × 4 × 4) with gain UP², on ``like``'s device."""
    taps = torch.tensor(FIR_TAPS, dtype=like.dtype, device=like.device)
    kernel = taps[:, None] * taps[None, :]
    kernel = kernel / kernel.sum() * UP ** 2
    return kernel.expand(channels, 1, -1, -1)


def fir_upsample(x: torch.Tensor) -> torch.Tensor:
    """×2 up-sampling of N × C × H × W: zero insertion, then the filter (padding 2 before,
    1 after, as ``upsample2d``)."""
    return F.conv_transpose2d(x, fir_kernel(x.shape[1], x), stride=UP, padding=1,
                              groups=x.shape[1])


def upsample_conv(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """StyleGAN2's up-sampling convolution: stride-2 transposed conv with ``weight``
    (out × in × k × k, used unflipped), then the filter with padding 1 (2H + 1 → 2H)."""
    x = F.conv_transpose2d(x, weight.transpose(0, 1), stride=UP)
    x = F.pad(x, (1, 1, 1, 1))
    return F.conv2d(x, fir_kernel(x.shape[1], x), groups=x.shape[1])
