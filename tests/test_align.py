"""5-point alignment: the similarity fit on synthetic landmarks, the warp, the missing-extra
error, and dlib's detector path on scikit-image's astronaut (where dlib-bin is installed)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mibench.datasets.real import align
from mibench.datasets.real.images import CELEBA_CROP


def similarity(scale: float, angle: float, shift: tuple[float, float]) -> torch.Tensor:
    c, s = math.cos(angle), math.sin(angle)
    return torch.tensor([[scale * c, -scale * s, shift[0]], [scale * s, scale * c, shift[1]]],
                        dtype=torch.float64)


def apply(matrix: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    return points @ matrix[:, :2].T + matrix[:, 2]


def test_similarity_transform_recovers_a_known_one() -> None:
    truth = similarity(2.3, 0.4, (15.0, -7.0))
    src = align.ARCFACE_TEMPLATE
    estimated = align.similarity_transform(src, apply(truth, src))
    assert torch.allclose(estimated, truth, atol=1e-9)


def test_similarity_transform_is_least_squares_with_noise() -> None:
    truth = similarity(0.5, -0.2, (3.0, 4.0))
    src = align.ARCFACE_TEMPLATE * 3
    noise = torch.randn(5, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    dst = apply(truth, src) + 0.1 * noise
    estimated = align.similarity_transform(src, dst)
    assert torch.allclose(estimated, truth, atol=0.5)

    def residual(matrix: torch.Tensor) -> float:
        return float((apply(matrix, src) - dst).pow(2).sum())

    assert residual(estimated) <= residual(truth)  # least squares beats the noiseless truth


def test_warp_puts_the_landmarks_on_the_template() -> None:
    size, big = 64, 200
    truth = similarity(1.7, 0.3, (40.0, 20.0))  # template (112 px) → a face in a big image
    landmarks = apply(truth, align.ARCFACE_TEMPLATE[align.EYES_AND_NOSE])
    image = torch.zeros(1, 3, big, big)
    for k, (x, y) in enumerate(landmarks.round().long().tolist()):
        image[0, k, y - 1:y + 2, x - 1:x + 2] = 1.0  # one channel per landmark
    out = align.warp_to_template(image, landmarks[None], size)
    assert out.shape == (1, 3, size, size)
    for k, (x, y) in enumerate(align.template(size).tolist()):
        peak = int(out[0, k].argmax())
        assert abs(peak % size - x) <= 1.5 and abs(peak // size - y) <= 1.5


def test_missing_extra_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def absent(name: str) -> None:
        raise ImportError(f"No module named {name!r}")

    monkeypatch.setattr(align.importlib, "import_module", absent)
    with pytest.raises(align.AlignmentUnavailable, match=r"pip install 'mibench\[align\]'"):
        align.Landmarker()


def test_detector_path_aligns_a_real_face(tmp_path: Path) -> None:
    pytest.importorskip("dlib", reason="alignment needs dlib-bin")
    data = pytest.importorskip("skimage.data")
    path = tmp_path / "astronaut.png"
    Image.fromarray(data.astronaut()).save(path)
    landmarker = align.Landmarker()
    points = landmarker(data.astronaut())
    assert points is not None and points[0, 0] < points[1, 0]
    image, found = align.align_file(path, landmarker, CELEBA_CROP, 112)
    assert found and image is not None and image.shape == (3, 112, 112)
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((120, 100, 3), 90, np.uint8)).save(blank)
    fallback, found = align.align_file(blank, landmarker, CELEBA_CROP, 32)
    assert not found and fallback is not None and fallback.shape == (3, 32, 32)
    images, bad = align.decode_all_aligned([path, tmp_path / "gone.jpg"], CELEBA_CROP, 32,
                                           progress=False)
    assert images.shape == (1, 3, 32, 32) and bad == [tmp_path / "gone.jpg"]
