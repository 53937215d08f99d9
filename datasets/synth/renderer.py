"""Vectorised, deterministic renderer of synthetic face portraits.

A batch of :data:`FaceParams` is painted back to front with soft signed-distance shapes:
background (two-colour gradient + texture), shoulders, back hair, neck, ears, the face oval with
its jaw, age lines, beard, nose, mouth, eyes, brows, top hair, glasses and occluders; then
Lambertian shading of the head by a directional light, exposure and colour temperature, average
pooling of the supersampled canvas, camera blur and sensor noise, and quantisation to uint8.
Every step is elementwise on float32 with exact IEEE operations, so an image depends only on
its own parameters: the bytes are the same for any batch split and any number of threads.
Layers that no image of a batch needs (glasses, beard, occluder, ...) are skipped; painting with
alpha 0 leaves a pixel bit-identical, so skipping does not change any image.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Iterator

import torch

from mibench.datasets.synth.face import FaceParams, slice_params
from mibench.datasets.synth.shapes import (binomial_blur, box, cover, ellipse, hash_uniform, over,
                                           segment, smoothstep, value_noise)

RENDERER_VERSION = "1"
PIXELS_PER_CHUNK = 1 << 17  # (supersampled) pixels per image × images per chunk: stays in cache
BEARD_ALPHA = torch.tensor([0.0, 0.3, 0.88])
EYE_WHITE = (0.93, 0.92, 0.89)
DARK = (0.07, 0.05, 0.05)


class _Canvas:
    """A batch being painted: the image, the pixel grid, face coordinates and a person mask."""

    def __init__(self, params: FaceParams, size: int) -> None:
        n = params["cx"].shape[0]
        self.params = {k: v.view(n, 1, 1) if v.ndim == 1 else v.view(n, 3, 1, 1)
                       for k, v in params.items()}
        centres = (torch.arange(size, dtype=torch.float32) + 0.5) * (2.0 / size) - 1.0
        self.x, self.y = centres.view(1, 1, size), centres.view(1, size, 1)
        P = self.params
        dx, dy = self.x - P["cx"], self.y - P["cy"]
        self.p = (P["cos_roll"] * dx + P["sin_roll"] * dy) / P["scale"]
        self.q = (P["cos_roll"] * dy - P["sin_roll"] * dx) / P["scale"]
        self.aa = (2.0 / size) / P["scale"]  # one pixel in face units
        self.image = torch.zeros(n, 3, size, size)
        self.person = torch.zeros(n, size, size)

    def paint(self, alpha: torch.Tensor, colour: torch.Tensor | tuple[float, float, float],
              person: bool = True) -> None:
        if isinstance(colour, tuple):
            colour = torch.tensor(colour).view(1, 3, 1, 1)
        self.image = over(self.image, alpha, colour)
        if person:
            self.person = self.person + (1.0 - self.person) * alpha


def render(params: FaceParams, resolution: int, supersample: int = 1) -> torch.Tensor:
    """Render a batch: uint8 images n×3×resolution×resolution."""
    canvas = _Canvas(params, resolution * supersample)
    _background(canvas)
    _body(canvas)
    face_alpha = _head(canvas)
    _nose_and_mouth(canvas)
    _eyes_and_brows(canvas)
    _top_hair(canvas, face_alpha)
    _glasses(canvas)
    _occluder(canvas)
    _light(canvas)
    return _camera(canvas.image, canvas.params, supersample)


def render_chunks(params: FaceParams, resolution: int, supersample: int = 1,
                  chunk_size: int | None = None,
                  workers: int | None = None) -> Iterator[tuple[int, torch.Tensor]]:
    """Render every image of ``params``; yields ``(first index, uint8 images)`` chunk by chunk.

    Chunks are rendered by ``workers`` threads (default: ``torch.get_num_threads()``) whose
    tensor ops are single-threaded. On small tensors this beats intra-op parallelism, above all
    on a busy CPU, where OpenMP barriers stall. ``chunk_size`` defaults to about
    :data:`PIXELS_PER_CHUNK` pixels per chunk; neither setting changes any output byte.
    """
    n = params["cx"].shape[0]
    side = resolution * supersample
    chunk = chunk_size or max(1, PIXELS_PER_CHUNK // (side * side))
    workers = workers or torch.get_num_threads()
    pool = ThreadPoolExecutor(max_workers=workers, initializer=torch.set_num_threads,
                              initargs=(1,))
    pending: deque[tuple[int, Future[torch.Tensor]]] = deque()
    try:
        for start in range(0, n, chunk):
            pending.append((start, pool.submit(render, slice_params(params, start, start + chunk),
                                               resolution, supersample)))
            if len(pending) > 2 * workers:
                first, future = pending.popleft()
                yield first, future.result()
        while pending:
            first, future = pending.popleft()
            yield first, future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _background(c: _Canvas) -> None:
    P = c.params
    t = (0.5 + P["bg_grad_x"] * c.x * 0.5 + P["bg_grad_y"] * c.y * 0.5).clamp(0.0, 1.0)
    coarse = value_noise(P["noise_seed"], c.x, c.y, 4, 4, salt=1)
    fine = value_noise(P["noise_seed"], c.x, c.y, 14, 14, salt=2)
    texture = (coarse + fine * 0.6 - 0.8) * P["bg_texture"] * 2.0
    c.image = P["bg1"] + (P["bg2"] - P["bg1"]) * t[:, None] + texture[:, None]


def _body(c: _Canvas) -> None:
    P, p, q, aa = c.params, c.p, c.q, c.aa
    shoulders = ellipse(p, q, P["face_x"] * 0.3, P["face_ry"] + 0.66, 0.98, 0.44)
    c.paint(cover(shoulders, aa), P["clothes"])
    back = P["hair_back"]
    has_back = (back > -0.3).float()
    back_hair = box(p, q, P["hair_x"], (back - 0.1) * 0.5, P["face_rx"] + 0.07 + P["hair_volume"],
                    (back + 0.1).abs() * 0.5, 0.12)
    c.paint(cover(back_hair, aa * 1.5) * has_back * P["hair_alpha"], P["hair"] * 0.72)
    neck = box(p, q, P["face_x"] * 0.5, P["face_ry"] * 0.6 + 0.25, P["face_rx"] * 0.5, 0.3, 0.05)
    c.paint(cover(neck, aa), P["skin"] * 0.8)


def _head(c: _Canvas) -> torch.Tensor:
    """Ears, face oval, age lines and beard; returns the face's alpha."""
    P, p, q, aa = c.params, c.p, c.q, c.aa
    for ear_x in (P["ear_x_left"], P["ear_x_right"]):
        c.paint(cover(ellipse(p, q, ear_x, P["ear_y"], P["ear_rx"], P["ear_ry"]), aa),
                P["skin"] * 0.93)
        inner = ellipse(p, q, ear_x, P["ear_y"], P["ear_rx"] * 0.45, P["ear_ry"] * 0.6)
        c.paint(cover(inner, aa * 2.0) * 0.5, P["skin"] * 0.7)
    fp = p - P["face_x"]
    low = (q / P["face_ry"]).clamp(0.0, 1.0)
    face_rx = P["face_rx"] * (1.0 - P["jaw_taper"] * low * low)
    face_alpha = cover(ellipse(fp, q, 0.0, 0.0, face_rx, P["face_ry"]), aa)
    c.paint(face_alpha, P["skin"])

    if bool((P["wrinkles"] > 0.0).any()) or bool((P["smile"] > 0.0).any()):
        _age_lines(c, fp, face_alpha)
    strength = BEARD_ALPHA[P["beard"].long()]
    if bool((strength > 0.0).any()):
        _beard(c, face_alpha, strength)
    return face_alpha


def _age_lines(c: _Canvas, fp: torch.Tensor, face_alpha: torch.Tensor) -> None:
    """Forehead wrinkles (age) and nasolabial folds (age, smile)."""
    P, p, q, aa = c.params, c.p, c.q, c.aa
    fade = P["wrinkles"] * face_alpha
    for k in range(3):
        line = q - (P["brow_y"] - 0.055 - 0.028 * k) - 0.6 * fp * fp
        lines = cover(line.abs() - 0.002, aa * 1.5) * cover(fp.abs() - 0.17, aa * 6.0)
        c.paint(lines * fade * 0.4, P["skin"] * 0.62)
    for side in (-1.0, 1.0):
        fold = segment(p, q, P["nose_tip_x"] + side * P["nose_w"] * 1.3, P["nose_tip_y"] - 0.01,
                       P["mouth_x"] + side * P["mouth_w"] * 1.15, P["mouth_y"] + 0.035, 0.002)
        c.paint(cover(fold, aa * 2.0) * face_alpha * (fade * 0.5 + P["smile"] * 0.25),
                P["skin"] * 0.6)


def _beard(c: _Canvas, face_alpha: torch.Tensor, strength: torch.Tensor) -> None:
    P, p, q, aa = c.params, c.p, c.q, c.aa
    jaw = face_alpha * smoothstep((q - P["nose_tip_y"] - 0.01) / 0.05)
    mouth_gap = cover(ellipse(p, q, P["mouth_x"], P["mouth_y"], P["mouth_w"] * 1.05,
                              P["lip_h"] * 1.3), aa)
    stubble = value_noise(P["noise_seed"], c.x, c.y, 40, 40, salt=3)
    texture = 1.0 - (strength < 0.5).float() * stubble * 0.5
    c.paint(jaw * (1.0 - mouth_gap) * strength * texture, P["hair"] * 0.9)


def _nose_and_mouth(c: _Canvas) -> None:
    P, p, q, aa = c.params, c.p, c.q, c.aa
    shadow_side = -torch.sign(P["light_x"]) * P["nose_w"] * 0.55
    bridge = segment(p, q, P["nose_top_x"] + shadow_side, P["nose_top_y"],
                     P["nose_tip_x"] + shadow_side, P["nose_tip_y"] - 0.02, P["nose_w"] * 0.28)
    c.paint(cover(bridge, aa * 5.0) * 0.3, P["skin"] * 0.6)
    tip = ellipse(p, q, P["nose_tip_x"], P["nose_tip_y"] - 0.006, P["nose_w"], P["nose_w"] * 0.6)
    c.paint(cover(tip, aa * 4.0) * 0.35, P["skin"] * 0.75)
    for side in (-1.0, 1.0):
        nostril = ellipse(p, q, P["nose_tip_x"] + side * P["nose_w"] * 0.55,
                          P["nose_tip_y"] + 0.006, P["nose_w"] * 0.32, P["nose_w"] * 0.18)
        c.paint(cover(nostril, aa * 1.5) * 0.85, P["skin"] * 0.3)

    mp = p - P["mouth_x"]
    across = mp / P["mouth_w"]
    mq = q - P["mouth_y"] + P["smile"] * 0.045 * across * across
    c.paint(cover(ellipse(mp, mq, 0.0, 0.0, P["mouth_w"], P["lip_h"]), aa), P["lips"])
    opening = (P["smile"] - 0.55).clamp(min=0.0) * 0.06
    inside = cover(ellipse(mp, mq, 0.0, opening * 0.5, P["mouth_w"] * 0.88, opening + 0.004), aa)
    c.paint(inside, P["lips"] * 0.3)
    teeth = inside * cover(mq - opening * 0.45, aa) * (opening > 0.0).float()
    c.paint(teeth, (0.9, 0.88, 0.82))


def _eyes_and_brows(c: _Canvas) -> None:
    P, p, q, aa = c.params, c.p, c.q, c.aa
    for eye_x, eye_w, brow_x, side in ((P["eye_x_left"], P["eye_w_left"], P["brow_x_left"], -1.0),
                                       (P["eye_x_right"], P["eye_w_right"], P["brow_x_right"],
                                        1.0)):
        white_d = ellipse(p, q, eye_x, P["eye_y"], eye_w, P["eye_h"])
        white = cover(white_d, aa)
        c.paint(white, EYE_WHITE)
        iris_x = eye_x + P["gaze"]
        c.paint(cover(ellipse(p, q, iris_x, P["eye_y"], P["iris_r"], P["iris_r"]), aa) * white,
                P["iris"])
        pupil = ellipse(p, q, iris_x, P["eye_y"], P["iris_r"] * 0.45, P["iris_r"] * 0.45)
        c.paint(cover(pupil, aa) * white, DARK)
        upper = cover(q - P["eye_y"] - P["eye_h"] * 0.3, aa * 2.0)
        c.paint(cover(white_d.abs() - 0.006, aa) * upper, DARK)
        inner, outer = brow_x - side * P["brow_half"], brow_x + side * P["brow_half"]
        brow = segment(p, q, inner, P["brow_y"] + P["brow_tilt"], outer,
                       P["brow_y"] - P["brow_tilt"], P["brow_thick"])
        c.paint(cover(brow, aa * 1.5) * 0.95, P["brow"])


def _top_hair(c: _Canvas, face_alpha: torch.Tensor) -> None:
    P, p, q, aa = c.params, c.p, c.q, c.aa
    volume = P["hair_volume"]
    outer = ellipse(p, q, P["hair_x"], -0.06 - volume * 0.4, P["face_rx"] + 0.05 + volume,
                    P["face_ry"] + 0.06 + volume)
    fp = (p - P["face_x"]) / P["face_rx"]
    hairline = P["hairline"] + 0.3 * P["face_ry"] * fp * fp
    face_below = face_alpha * smoothstep((q - hairline) / 0.03 + 0.5)
    alpha = cover(outer, aa * 1.5) * (1.0 - face_below) * cover(q - P["hair_side"], aa * 3.0)
    streaks = value_noise(P["noise_seed"], c.x, c.y, 48, 7, salt=4)
    curls = (value_noise(P["noise_seed"], c.x, c.y, 20, 20, salt=5)
             + value_noise(P["noise_seed"], c.x, c.y, 41, 41, salt=6)) * 0.5
    shade = 0.8 + 0.4 * (streaks + (curls - streaks) * P["hair_texture"])
    c.paint(alpha * P["hair_alpha"], P["hair"] * shade[:, None])


def _glasses(c: _Canvas) -> None:
    P, p, q, aa = c.params, c.p, c.q, c.aa
    on = P["glasses"]
    if not bool((on > 0.0).any()):
        return
    frame = P["frame_tone"][:, None].expand(-1, 3, -1, -1)
    lens_alpha = on * (0.1 + 0.75 * P["sunglasses"])
    rims = []
    for eye_x, eye_w, ear_x, side in ((P["eye_x_left"], P["eye_w_left"], P["ear_x_left"], -1.0),
                                      (P["eye_x_right"], P["eye_w_right"], P["ear_x_right"], 1.0)):
        rx = eye_w * 1.6
        lens = ellipse(p, q, eye_x, P["eye_y"] + 0.008, rx, P["iris_r"] * 2.3)
        c.paint(cover(lens, aa) * lens_alpha, (0.08, 0.09, 0.12))
        c.paint(cover(lens.abs() - 0.007, aa) * on, frame)
        arm = segment(p, q, eye_x + side * rx, P["eye_y"], ear_x, P["ear_y"] - 0.05, 0.006)
        c.paint(cover(arm, aa) * on, frame)
        rims.append(eye_x - side * rx)
    bridge = segment(p, q, rims[0], P["eye_y"] - 0.01, rims[1], P["eye_y"] - 0.01, 0.007)
    c.paint(cover(bridge, aa) * on, frame)


def _occluder(c: _Canvas) -> None:
    P = c.params
    if not bool((P["occluder"] > 0.0).any()):
        return
    blob = ellipse(c.x, c.y, P["occ_x"], P["occ_y"], P["occ_size"], P["occ_size"] * 1.4)
    c.paint(cover(blob, 2.0 / c.x.shape[-1]) * P["occluder"], P["occ_colour"], person=False)


def _light(c: _Canvas) -> None:
    """Lambertian shading of the person (head ellipsoid normals), then exposure and tint."""
    P = c.params
    u = (c.p - P["face_x"]) / (P["face_rx"] * 1.2)
    v = (c.q + 0.05) / (P["face_ry"] * 1.2)
    r2 = u * u + v * v
    outside = torch.maximum(r2.sqrt(), torch.ones(()))
    u, v = u / outside, v / outside
    nz = (1.0 - u * u - v * v).clamp(min=0.0).sqrt()
    lambert = (u * P["light_x"] + v * P["light_y"] + nz * P["light_z"]).clamp(min=0.0)
    shade = P["ambient"] + (1.0 - P["ambient"]) * lambert * 1.25
    c.image = c.image * (1.0 + c.person * (shade - 1.0))[:, None] * P["tint"]


def _camera(image: torch.Tensor, P: FaceParams, supersample: int) -> torch.Tensor:
    """Average-pool the supersampled canvas, blur, add sensor noise, quantise to uint8."""
    if supersample > 1:
        n, _, size, _ = image.shape
        r = size // supersample
        blocks = image.view(n, 3, r, supersample, r, supersample)
        pooled = blocks[:, :, :, 0, :, 0]
        for i in range(supersample):
            for j in range(supersample):
                if i or j:
                    pooled = pooled + blocks[:, :, :, i, :, j]
        image = pooled * (1.0 / (supersample * supersample))
    amount = P["blur"][:, None]
    if bool((amount > 0.0).any()):
        once = binomial_blur(image)
        twice = binomial_blur(once)
        image = (image + (once - image) * amount.clamp(0.0, 1.0)
                 + (twice - once) * (amount - 1.0).clamp(0.0, 1.0))
    r = image.shape[-1]
    rows = torch.arange(r).view(1, 1, r, 1)
    cols = torch.arange(r).view(1, 1, 1, r)
    channel = torch.arange(3).view(1, 3, 1, 1)
    seed = P["noise_seed"][:, None]
    grain = (hash_uniform(seed, cols + channel * 4099, rows, salt=7)
             + hash_uniform(seed, cols, rows + channel * 4099, salt=8) - 1.0)
    image = image + grain * P["noise"][:, None] * 2.45
    return (image.clamp(0.0, 1.0) * 255.0 + 0.5).floor().to(torch.uint8)
