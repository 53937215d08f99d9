"""Signed-distance shapes, antialiased coverage, compositing and hash noise for the renderer.

Distances are negative inside a shape. Coverage turns a distance into an alpha that ramps
linearly over one pixel (analytic antialiasing), or over several for soft shapes. Noise is an
integer hash of (seed, cell) (no random state), so every image's texture depends only on its
own seed. Everything uses exact IEEE operations (+, −, ×, ÷, √, min/max, integer bit ops) so
results do not depend on SIMD paths, thread counts or batch sizes.
"""

from __future__ import annotations

import torch

Scalar = torch.Tensor | float
_MASK32 = 0xFFFFFFFF


def ellipse(p: torch.Tensor, q: torch.Tensor, cx: Scalar, cy: Scalar, rx: Scalar,
            ry: Scalar) -> torch.Tensor:
    """Approximate signed distance to an axis-aligned ellipse (exact for circles)."""
    u = (p - cx) / rx
    v = (q - cy) / ry
    radius = torch.minimum(torch.as_tensor(rx), torch.as_tensor(ry))
    return ((u * u + v * v).sqrt() - 1.0) * radius


def segment(p: torch.Tensor, q: torch.Tensor, ax: Scalar, ay: Scalar, bx: Scalar, by: Scalar,
            radius: Scalar) -> torch.Tensor:
    """Signed distance to a capsule: the segment a→b thickened by ``radius``."""
    px, py = p - ax, q - ay
    dx, dy = bx - ax, by - ay
    h = ((px * dx + py * dy) / (dx * dx + dy * dy + 1e-9)).clamp(0.0, 1.0)
    ex, ey = px - dx * h, py - dy * h
    return (ex * ex + ey * ey).sqrt() - radius


def box(p: torch.Tensor, q: torch.Tensor, cx: Scalar, cy: Scalar, half_w: Scalar,
        half_h: Scalar, radius: Scalar) -> torch.Tensor:
    """Signed distance to a rectangle with corners rounded by ``radius``."""
    dx = (p - cx).abs() - half_w + radius
    dy = (q - cy).abs() - half_h + radius
    ox, oy = dx.clamp(min=0.0), dy.clamp(min=0.0)
    inside = torch.maximum(dx, dy).clamp(max=0.0)
    return (ox * ox + oy * oy).sqrt() + inside - radius


def cover(distance: torch.Tensor, width: Scalar) -> torch.Tensor:
    """Alpha of a shape: 1 inside, 0 outside, a linear ramp ``width`` wide across the edge."""
    return (0.5 - distance / width).clamp(0.0, 1.0)


def smoothstep(t: torch.Tensor) -> torch.Tensor:
    """3t² − 2t³ on t clamped to [0, 1]."""
    t = t.clamp(0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def over(canvas: torch.Tensor, alpha: torch.Tensor, colour: torch.Tensor) -> torch.Tensor:
    """Paint ``colour`` (n×3×1×1 or n×3×H×W) onto ``canvas`` (n×3×H×W) with alpha (n×H×W)."""
    return canvas + (colour - canvas) * alpha[:, None]


def hash_uniform(seed: torch.Tensor, ix: torch.Tensor, iy: torch.Tensor,
                 salt: int) -> torch.Tensor:
    """Uniform [0, 1) float from integer tensors (broadcast), by an avalanche integer hash."""
    h = (seed * 73856093 + ix * 19349663 + iy * 83492791 + salt * 2654435) & _MASK32
    h = ((h ^ (h >> 15)) * 0x2C1B3C6D) & _MASK32
    h = ((h ^ (h >> 12)) * 0x297A2D39) & _MASK32
    h = h ^ (h >> 15)
    return (h & 0xFFFFFF).float() * (1.0 / (1 << 24))


def value_noise(seed: torch.Tensor, x: torch.Tensor, y: torch.Tensor, cells_x: int,
                cells_y: int, salt: int) -> torch.Tensor:
    """Smooth noise in [0, 1) over the image square: bilinear interpolation of a hashed grid.

    ``seed`` is n×1×1 (int64), ``x`` 1×1×W and ``y`` 1×H×1 pixel centres in [-1, 1].
    """
    gx = torch.arange(cells_x + 1).view(1, 1, -1)
    gy = torch.arange(cells_y + 1).view(1, -1, 1)
    grid = hash_uniform(seed, gx, gy, salt)
    u = (x.flatten() + 1.0) * (0.5 * cells_x)
    v = (y.flatten() + 1.0) * (0.5 * cells_y)
    ix, iy = u.floor().long().clamp(0, cells_x - 1), v.floor().long().clamp(0, cells_y - 1)
    fx = smoothstep(u - ix.float()).view(1, 1, -1)
    fy = smoothstep(v - iy.float()).view(1, -1, 1)
    top, bottom = grid[:, iy, :], grid[:, iy + 1, :]
    upper = top[:, :, ix] + (top[:, :, ix + 1] - top[:, :, ix]) * fx
    lower = bottom[:, :, ix] + (bottom[:, :, ix + 1] - bottom[:, :, ix]) * fx
    return upper + (lower - upper) * fy


def binomial_blur(images: torch.Tensor) -> torch.Tensor:
    """One separable [1, 4, 6, 4, 1]/16 blur pass (edges replicated), as explicit sums."""
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2), mode="replicate")
    h, w = images.shape[-2:]
    rows = (padded[..., 0:w] + padded[..., 4:w + 4] + (padded[..., 1:w + 1]
            + padded[..., 3:w + 3]) * 4.0 + padded[..., 2:w + 2] * 6.0) * 0.0625
    return (rows[..., 0:h, :] + rows[..., 4:h + 4, :] + (rows[..., 1:h + 1, :]
            + rows[..., 3:h + 3, :]) * 4.0 + rows[..., 2:h + 2, :] * 6.0) * 0.0625
