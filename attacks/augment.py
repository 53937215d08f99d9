"""Differentiable, batched image augmentations on the device (attacks.md §A.3).

Every transform draws one set of parameters per image from a seeded ``torch.Generator`` and is
differentiable in the pixels, so attacks optimise through it (PPA, IF-GMI) and score with it
(PPA's final selection). Outputs keep the input's size: targets resize their own inputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from kornia.geometry.transform import crop_and_resize


def center_crop(images: torch.Tensor, fraction: float) -> torch.Tensor:
    """The central ``fraction`` of each side (PPA's CenterCrop 800 of 1024 is 0.78125)."""
    if fraction >= 1:
        return images
    h, w = images.shape[-2:]
    ch, cw = max(1, round(h * fraction)), max(1, round(w * fraction))
    top, left = (h - ch) // 2, (w - cw) // 2
    return images[..., top:top + ch, left:left + cw]


def random_resized_crop(images: torch.Tensor, scale: tuple[float, float],
                        ratio: tuple[float, float], generator: torch.Generator) -> torch.Tensor:
    """torchvision's RandomResizedCrop, batched: a box of area ∈ ``scale`` × image area and
    log-uniform aspect ratio ∈ ``ratio`` (clamped to the image instead of torchvision's 10
    rejection retries), resized back to the input size."""
    n, _, h, w = images.shape
    device = images.device

    def uniform(low: float, high: float) -> torch.Tensor:
        return torch.rand(n, device=device, generator=generator) * (high - low) + low

    area = uniform(*scale) * h * w
    aspect = uniform(math.log(ratio[0]), math.log(ratio[1])).exp()
    cw = (area * aspect).sqrt().clamp(1, w)
    ch = (area / aspect).sqrt().clamp(1, h)
    x0 = uniform(0, 1) * (w - cw)
    y0 = uniform(0, 1) * (h - ch)
    x1, y1 = x0 + cw - 1, y0 + ch - 1
    boxes = torch.stack([torch.stack([x0, y0], 1), torch.stack([x1, y0], 1),
                         torch.stack([x1, y1], 1), torch.stack([x0, y1], 1)], 1)
    return crop_and_resize(images, boxes, (h, w))


def random_flip(images: torch.Tensor, p: float, generator: torch.Generator) -> torch.Tensor:
    """Mirror each image horizontally with probability ``p``."""
    flip = torch.rand(len(images), device=images.device, generator=generator) < p
    return torch.where(flip[:, None, None, None], images.flip(-1), images)


@dataclass(frozen=True)
class Augment:
    """Centre crop, then RandomResizedCrop(scale, ratio), then horizontal flip with ``flip``."""

    crop: float = 1.0
    scale: tuple[float, float] = (1.0, 1.0)
    ratio: tuple[float, float] = (1.0, 1.0)
    flip: float = 0.0

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        images = center_crop(images, self.crop)
        if self.scale != (1.0, 1.0) or self.ratio != (1.0, 1.0):
            images = random_resized_crop(images, self.scale, self.ratio, generator)
        if self.flip > 0:
            images = random_flip(images, self.flip, generator)
        return images
