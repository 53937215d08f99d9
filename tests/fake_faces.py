"""Small fake CelebA / FFHQ / VGGFace2 trees in the real file formats, for the adapter tests.

Every identity has its own colour; each image is that colour inside the region the dataset's
crop convention keeps and grey outside it, plus per-image noise, so a test can tell whether the
crop was applied. CelebA: 178×218 JPEGs in ``img_align_celeba/`` and ``identity_CelebA.txt``;
FFHQ: 128×128 PNGs in ``00000/``; VGGFace2: ``n000001/0001_01.jpg`` of varying sizes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

BORDER = 128  # grey outside the crop region


def identity_colour(identity: int) -> tuple[int, int, int]:
    rng = np.random.default_rng(identity)
    return tuple(int(v) for v in rng.integers(20, 236, size=3))  # type: ignore[return-value]


def face_image(identity: int, k: int, size: tuple[int, int],
               box: tuple[int, int, int, int]) -> Image.Image:
    w, h = size
    pixels = np.full((h, w, 3), BORDER, dtype=np.int16)
    left, top, right, bottom = box
    pixels[top:bottom, left:right] = identity_colour(identity)
    noise = np.random.default_rng(1000 * identity + k).integers(-6, 7, size=pixels.shape)
    return Image.fromarray(np.clip(pixels + noise, 0, 255).astype(np.uint8))


def fake_celeba(root: Path, counts: dict[int, int]) -> Path:
    """CelebA with identity id → image count; files numbered in identity order."""
    images = root / "img_align_celeba"
    images.mkdir(parents=True)
    lines, n = [], 0
    for identity, count in counts.items():
        for k in range(count):
            n += 1
            name = f"{n:06d}.jpg"
            face_image(identity, k, (178, 218), (35, 55, 143, 163)).save(
                images / name, quality=95, subsampling=0)
            lines.append(f"{name} {identity}")
    (root / "identity_CelebA.txt").write_text("\n".join(lines) + "\n")
    return root


def fake_ffhq(root: Path, count: int) -> Path:
    folder = root / "00000"
    folder.mkdir(parents=True)
    for k in range(count):
        face_image(5000 + k, 0, (128, 128), (20, 20, 108, 108)).save(folder / f"{k:05d}.png")
    return root


def fake_identity_tree(root: Path, names: list[str], per_identity: int) -> Path:
    """``root/<name>/<k>_01.jpg``; sizes vary (VGGFace2's loose crops), centre square kept."""
    for i, name in enumerate(names):
        folder = root / name
        folder.mkdir(parents=True)
        for k in range(per_identity):
            w, h = 90 + 10 * k, 120
            top = (h - w) // 2
            face_image(7000 + i, k, (w, h), (0, top, w, top + w)).save(
                folder / f"{k + 1:04d}_01.jpg", quality=95, subsampling=0)
    return root
