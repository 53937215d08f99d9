"""Differentiable, batched image augmentations on the device (attacks.md §A.3).

Every transform draws one set of parameters per image from a seeded ``torch.Generator`` and is
differentiable in the pixels, so attacks optimise through it (PPA, IF-GMI) and score with it
(PPA's final selection). Outputs keep the input's size: targets resize their own inputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from kornia.filters import gaussian_blur2d
from kornia.geometry.transform import crop_and_resize, rotate


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


def colour_jitter(images: torch.Tensor, brightness: float, contrast: float, p: float,
                  generator: torch.Generator) -> torch.Tensor:
    """kornia 0.6's ColorJitter (today's ``ColorJiggle``) with brightness and contrast only: with
    probability ``p`` per image, add b − 1 and multiply by c, b, c ~ U[1 − ·, 1 + ·], in one
    random order for the batch, each result clamped to [0, 1]."""
    n, device = len(images), images.device

    def factor(spread: float) -> torch.Tensor:
        u = torch.rand(n, device=device, generator=generator) * 2 * spread - spread
        return (1 + u)[:, None, None, None]

    b, c = factor(brightness), factor(contrast)
    apply = torch.rand(n, device=device, generator=generator) < p
    steps = [lambda x: (x + b - 1).clamp(0, 1), lambda x: (x * c).clamp(0, 1)]
    if torch.rand((), device=device, generator=generator) < 0.5:
        steps.reverse()
    jittered = images.clamp(0, 1)
    for step in steps:
        jittered = step(jittered)
    return torch.where(apply[:, None, None, None], jittered, images)


def random_rotation(images: torch.Tensor, degrees: float, p: float,
                    generator: torch.Generator) -> torch.Tensor:
    """kornia's RandomRotation: with probability ``p`` per image, rotate about the centre by an
    angle ~ U[−degrees, degrees] (bilinear, zero padding)."""
    n, device = len(images), images.device
    angle = torch.rand(n, device=device, generator=generator) * 2 * degrees - degrees
    apply = torch.rand(n, device=device, generator=generator) < p
    return torch.where(apply[:, None, None, None], rotate(images, angle.to(images.dtype)), images)


@dataclass(frozen=True)
class PLGAugment:
    """PLG-MI's ``aug_list`` (train_cgan.py, reconstruct.py; attacks.md §A.3), in its order:
    RandomResizedCrop(scale, ratio 1), ColorJitter(brightness, contrast, p ``jitter_p``),
    RandomHorizontalFlip(``flip``), RandomRotation(``degrees``, p ``rotation_p``)."""

    scale: tuple[float, float] = (0.8, 1.0)
    brightness: float = 0.2
    contrast: float = 0.2
    jitter_p: float = 1.0
    flip: float = 0.5
    degrees: float = 5.0
    rotation_p: float = 0.5

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        images = random_resized_crop(images, self.scale, (1.0, 1.0), generator)
        images = colour_jitter(images, self.brightness, self.contrast, self.jitter_p, generator)
        images = random_flip(images, self.flip, generator)
        return random_rotation(images, self.degrees, self.rotation_p, generator)


def random_blur(images: torch.Tensor, kernel: int, sigma: float, p: float,
                generator: torch.Generator) -> torch.Tensor:
    """kornia's RandomGaussianBlur with a fixed σ: with probability ``p`` per image, a
    ``kernel``×``kernel`` Gaussian blur of std ``sigma`` (reflected borders)."""
    apply = torch.rand(len(images), device=images.device, generator=generator) < p
    blurred = gaussian_blur2d(images, (kernel, kernel), (sigma, sigma), border_type="reflect")
    return torch.where(apply[:, None, None, None], blurred, images)


@dataclass(frozen=True)
class DiffMIAugment:
    """Diff-MI's attack augmentation (3_attack/attack.py; attacks.md §A.3), in its order:
    RandomHorizontalFlip(``flip``), ColorJitter(brightness, p ``jitter_p``),
    RandomGaussianBlur(``blur_kernel``, σ ``blur_sigma``, p ``blur_p``), no crop, then the
    clamp to the image range ([0, 1] here, [−1, 1] in the official code)."""

    flip: float = 0.5
    brightness: float = 0.2
    jitter_p: float = 0.5
    blur_kernel: int = 7
    blur_sigma: float = 3.0
    blur_p: float = 0.5

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        images = random_flip(images, self.flip, generator)
        images = colour_jitter(images, self.brightness, 0.0, self.jitter_p, generator)
        images = random_blur(images, self.blur_kernel, self.blur_sigma, self.blur_p, generator)
        return images.clamp(0, 1)


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
