"""Finding, ordering and decoding image files; unreadable files are listed, never fatal.

Crop conventions (anchors.md §1.1, attacks.md A.1): CelebA ``img_align_celeba`` is centre-cropped
to 108×108 of its 178×218 (GMI/KEDMI/PLG-MI ``CelebA64``/``CelebA112``); FFHQ thumbnails to 88
of 128 (KEDMI/PLG-MI ``FFHQ64``); other trees (VGGFace2's loose crops, any identity-per-folder
tree) to their centre square. Each crop is a *fraction* of the image, so resized copies crop the
same face region; the crop is then resized (antialiased bilinear) to the world's resolution.
"""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
from PIL import Image
from tqdm import tqdm

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


@dataclass(frozen=True)
class Crop:
    """A centred box, as fractions of the image width and height (``None``: centre square)."""

    width: float | None
    height: float | None

    def box(self, w: int, h: int) -> tuple[int, int, int, int]:
        if self.width is None or self.height is None:
            side = min(w, h)
            cw, ch = side, side
        else:
            cw, ch = round(self.width * w), round(self.height * h)
        left, top = (w - cw) // 2, (h - ch) // 2
        return left, top, left + cw, top + ch


CELEBA_CROP = Crop(108 / 178, 108 / 218)
FFHQ_CROP = Crop(88 / 128, 88 / 128)
SQUARE_CROP = Crop(None, None)


def natural_key(name: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key that orders numbers numerically: "2" < "10", "n000002" < "n000010"."""
    return tuple((0, int(part)) if part.isdigit() else (1, part)
                 for part in re.split(r"(\d+)", name) if part)


def is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES) and not name.startswith(".")


def image_files(folder: Path, recursive: bool = False) -> list[Path]:
    """Image files in ``folder`` (and, if ``recursive``, below it), in natural order."""
    if recursive:
        found = [Path(dirpath) / name for dirpath, _, names in os.walk(folder)
                 for name in names if is_image(name)]
    else:
        found = [entry for entry in folder.iterdir() if entry.is_file() and is_image(entry.name)]
    return sorted(found, key=lambda p: natural_key(str(p.relative_to(folder))))


def decode(path: Path, crop: Crop, resolution: int) -> np.ndarray | None:
    """The image as uint8 3×R×R (cropped, resized), or ``None`` if it cannot be read."""
    try:
        with Image.open(path) as image:
            rgb = image.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    face = rgb.crop(crop.box(*rgb.size)).resize((resolution, resolution), Image.BILINEAR)
    return np.asarray(face).transpose(2, 0, 1)


def decode_all(paths: Iterable[Path], crop: Crop, resolution: int, *, desc: str = "decoding",
               progress: bool = True) -> tuple[np.ndarray, list[Path]]:
    """Decode ``paths`` in threads: (uint8 N×3×R×R of the readable ones in order, unreadable)."""
    paths = list(paths)
    workers = min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(workers) as pool:
        decoded = list(tqdm(pool.map(lambda p: decode(p, crop, resolution), paths),
                            total=len(paths), desc=desc, unit="img", disable=not progress,
                            leave=False))
    good = [image for image in decoded if image is not None]
    bad = [path for path, image in zip(paths, decoded) if image is None]
    images = np.stack(good) if good else np.zeros((0, 3, resolution, resolution), np.uint8)
    return images, bad
