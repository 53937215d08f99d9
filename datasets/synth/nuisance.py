"""Per-image nuisances: everything that changes between two photos of the same person.

Pose (yaw, pitch, roll), framing (scale, shift), expression (smile, eye openness, brow raise,
gaze), lighting (direction, ambient level, intensity, colour temperature), background (two
colours, gradient, texture), clothing, occluders (glasses, other objects), camera blur and
sensor noise, an occasional change of hairstyle and, in the wild style, a different age.
A :class:`Style` sets their ranges: ``celeba`` (CelebA-like: aligned celebrity photos, busy
backgrounds, mild blur), ``hq`` (FFHQ-like: sharp, clean, soft frontal light, smooth
backgrounds) and ``wild`` (VGGFace2-like: large pose, wide age range, harsh light, occluders).
Only uniform draws are used (no transcendental functions), so sampling is exact on any CPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mibench.datasets.synth.identity import HAIRSTYLES, INDEX

NUISANCE_NAMES: tuple[str, ...] = (
    "yaw", "pitch", "roll", "scale", "shift_x", "shift_y",
    "smile", "eye_open", "brow_raise", "gaze",
    "light_x", "light_y", "ambient", "intensity", "temperature",
    "bg1_r", "bg1_g", "bg1_b", "bg2_r", "bg2_g", "bg2_b", "bg_grad_x", "bg_grad_y", "bg_texture",
    "clothes_r", "clothes_g", "clothes_b",
    "glasses", "sunglasses", "frame_tone",
    "occluder", "occ_x", "occ_y", "occ_size", "occ_r", "occ_g", "occ_b",
    "blur", "noise", "hairstyle", "age_offset", "noise_seed",
)
NUISANCE_INDEX: dict[str, int] = {name: i for i, name in enumerate(NUISANCE_NAMES)}
NOISE_SEEDS = 1 << 24  # exactly representable in float32


@dataclass(frozen=True)
class Style:
    """Ranges of the nuisances of one dataset style (angles in radians, lengths in image units)."""

    yaw: float
    pitch: float
    roll: float
    scale: tuple[float, float]
    shift: float
    smile: float                      # probability of a smile
    light: float                      # max sideways component of the light direction
    ambient: tuple[float, float]
    intensity: tuple[float, float]
    temperature: float
    bg_brightness: tuple[float, float]
    bg_saturation: float
    bg_texture: tuple[float, float]
    clothes_saturation: float
    extra_glasses: float              # probability of glasses on an identity without them
    occluder: float                   # probability of an occluding object
    blur: tuple[float, float]         # 0 = sharp, 1 = one binomial pass, 2 = two
    noise: tuple[float, float]        # sensor noise std in [0, 1] units
    hairstyle_change: float
    age_offset: float


STYLES: dict[str, Style] = {
    "celeba": Style(yaw=0.55, pitch=0.18, roll=0.22, scale=(0.88, 1.12), shift=0.08, smile=0.5,
                    light=0.7, ambient=(0.45, 0.75), intensity=(0.75, 1.15), temperature=1.0,
                    bg_brightness=(0.1, 0.9), bg_saturation=0.45, bg_texture=(0.0, 0.25),
                    clothes_saturation=0.5, extra_glasses=0.04, occluder=0.05,
                    blur=(0.0, 1.0), noise=(0.0, 0.03), hairstyle_change=0.1, age_offset=0.08),
    "hq": Style(yaw=0.4, pitch=0.12, roll=0.12, scale=(0.95, 1.05), shift=0.03, smile=0.6,
                light=0.35, ambient=(0.65, 0.85), intensity=(0.95, 1.1), temperature=0.4,
                bg_brightness=(0.45, 0.95), bg_saturation=0.3, bg_texture=(0.0, 0.04),
                clothes_saturation=0.35, extra_glasses=0.04, occluder=0.0,
                blur=(0.0, 0.0), noise=(0.0, 0.004), hairstyle_change=0.0, age_offset=0.0),
    "wild": Style(yaw=0.9, pitch=0.3, roll=0.4, scale=(0.78, 1.2), shift=0.14, smile=0.4,
                  light=0.9, ambient=(0.3, 0.7), intensity=(0.6, 1.25), temperature=1.5,
                  bg_brightness=(0.05, 0.95), bg_saturation=0.6, bg_texture=(0.05, 0.35),
                  clothes_saturation=0.6, extra_glasses=0.08, occluder=0.15,
                  blur=(0.0, 2.0), noise=(0.0, 0.05), hairstyle_change=0.15, age_offset=0.5),
}


def sample_nuisances(attributes: torch.Tensor, style: str,
                     generator: torch.Generator) -> torch.Tensor:
    """One nuisance vector per image (n × len(NUISANCE_NAMES), float32).

    ``attributes`` are the identity vectors of the n images (their glasses and hairstyle are
    the defaults that a nuisance may override).
    """
    s = STYLES[style]
    n = attributes.shape[0]

    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(n, generator=generator)

    def triangular(half_width: float) -> torch.Tensor:
        return (torch.rand(n, generator=generator) + torch.rand(n, generator=generator) - 1.0
                ) * half_width

    def chance(p: float) -> torch.Tensor:
        return (torch.rand(n, generator=generator) < p).float()

    def colour(brightness: tuple[float, float], saturation: float) -> list[torch.Tensor]:
        level = uniform(*brightness)
        return [(level + uniform(-saturation, saturation) * 0.5).clamp(0.0, 1.0)
                for _ in range(3)]

    own_glasses = attributes[:, INDEX["glasses"]]
    changed = chance(s.hairstyle_change)
    new_style = (torch.rand(n, generator=generator) * len(HAIRSTYLES)).floor()
    hairstyle = attributes[:, INDEX["hairstyle"]] * (1.0 - changed) + new_style * changed
    smile = chance(s.smile) * uniform(0.3, 1.0)
    columns = {
        "yaw": triangular(s.yaw), "pitch": triangular(s.pitch), "roll": triangular(s.roll),
        "scale": uniform(*s.scale), "shift_x": triangular(s.shift),
        "shift_y": triangular(s.shift),
        "smile": smile, "eye_open": (uniform(0.55, 1.15) - chance(0.06) * 0.5),
        "brow_raise": triangular(1.0), "gaze": triangular(1.0),
        "light_x": triangular(s.light), "light_y": triangular(s.light) * 0.6 - 0.2,
        "ambient": uniform(*s.ambient), "intensity": uniform(*s.intensity),
        "temperature": triangular(s.temperature),
    }
    for prefix, values in (("bg1", colour(s.bg_brightness, s.bg_saturation)),
                           ("bg2", colour(s.bg_brightness, s.bg_saturation))):
        columns.update({f"{prefix}_{c}": v for c, v in zip("rgb", values)})
    columns.update({"bg_grad_x": triangular(1.5), "bg_grad_y": triangular(1.5),
                    "bg_texture": uniform(*s.bg_texture)})
    columns.update({f"clothes_{c}": v for c, v in
                    zip("rgb", colour((0.1, 0.85), s.clothes_saturation))})
    glasses = torch.maximum(own_glasses * chance(0.9), chance(s.extra_glasses))
    columns.update({"glasses": glasses, "sunglasses": chance(0.2),
                    "frame_tone": uniform(0.03, 0.6)})
    columns.update({"occluder": chance(s.occluder), "occ_x": triangular(0.9),
                    "occ_y": uniform(0.2, 0.9), "occ_size": uniform(0.12, 0.3)})
    columns.update({f"occ_{c}": v for c, v in zip("rgb", colour((0.1, 0.9), 0.6))})
    columns.update({"blur": uniform(*s.blur), "noise": uniform(*s.noise),
                    "hairstyle": hairstyle, "age_offset": triangular(s.age_offset),
                    "noise_seed": (torch.rand(n, generator=generator) * NOISE_SEEDS).floor()})
    return torch.stack([columns[name] for name in NUISANCE_NAMES], dim=1)
