"""From identity attributes and image nuisances to the geometry and colours the renderer draws.

All lengths are in *face units*: the face oval is ~0.4 wide and ~0.5 high (half-axes), centred
at the origin, y pointing down; the camera maps face units to the image square [-1, 1]².
Yaw is modelled as a weak-perspective head turn: each feature moves sideways by
``depth · sin(yaw)`` and the side turning away is foreshortened; pitch moves features up or
down by their depth. Only +, −, ×, ÷ and √ are used (sines are Taylor polynomials), so every
value is bit-identical on any CPU, for any thread count and any batch split.
"""

from __future__ import annotations

import torch

from mibench.datasets.synth.identity import INDEX
from mibench.datasets.synth.nuisance import NUISANCE_INDEX

FaceParams = dict[str, torch.Tensor]
"""Named per-image tensors: shape (n,) for scalars, (n, 3) for RGB colours in [0, 1]."""

# Hairstyle table (rows follow identity.HAIRSTYLES): coverage of the top hair, extra volume,
# lowest point of the side hair, lowest point of the back hair (below -0.3: none), hairline
# offset (positive: lower, i.e. a fringe) and strand texture strength.
HAIRSTYLE_TABLE = torch.tensor([
    # alpha volume  side   back  hairline texture
    [1.00, 0.030, -0.02, -0.50, 0.00, 0.25],   # short
    [1.00, 0.050, 0.95, 0.95, 0.00, 0.15],     # long
    [1.00, 0.070, 0.40, 0.42, 0.00, 0.15],     # bob
    [1.00, 0.050, 0.30, 0.35, 0.12, 0.15],     # bangs
    [0.55, 0.005, -0.05, -0.50, 0.02, 0.60],   # buzz
    [1.00, 0.170, 0.28, 0.32, -0.02, 1.00],    # curly
])

SKIN = ((0.98, 0.85, 0.75), (0.92, 0.72, 0.58), (0.80, 0.58, 0.42), (0.60, 0.40, 0.26),
        (0.40, 0.25, 0.15))
HAIR = ((0.92, 0.80, 0.52), (0.70, 0.52, 0.30), (0.40, 0.25, 0.13), (0.18, 0.11, 0.07),
        (0.05, 0.04, 0.04))
IRIS = ((0.30, 0.52, 0.80), (0.35, 0.58, 0.45), (0.52, 0.45, 0.22), (0.40, 0.23, 0.10),
        (0.14, 0.08, 0.05))
LIPS = ((0.85, 0.55, 0.55), (0.80, 0.35, 0.38), (0.62, 0.16, 0.22))
RED_HAIR = (0.62, 0.20, 0.06)
GREY_HAIR = (0.80, 0.80, 0.80)


def sin_small(x: torch.Tensor) -> torch.Tensor:
    """sin(x) for |x| ≤ 1.2 by its Taylor polynomial (error < 1e-7), exact IEEE ops only."""
    x2 = x * x
    return x * (1.0 - x2 / 6.0 * (1.0 - x2 / 20.0 * (1.0 - x2 / 42.0 * (1.0 - x2 / 72.0
                                                                        * (1.0 - x2 / 110.0)))))


def cos_small(x: torch.Tensor) -> torch.Tensor:
    """cos(x) for |x| ≤ 1.2 by its Taylor polynomial (error < 1e-7), exact IEEE ops only."""
    x2 = x * x
    return 1.0 - x2 / 2.0 * (1.0 - x2 / 12.0 * (1.0 - x2 / 30.0 * (1.0 - x2 / 56.0
                                                                   * (1.0 - x2 / 90.0))))


def palette(t: torch.Tensor, stops: tuple[tuple[float, float, float], ...]) -> torch.Tensor:
    """Piecewise-linear colour ramp: ``t`` in [0, 1] → RGB (n × 3) through ``stops``."""
    position = t.clamp(0.0, 1.0)[:, None] * (len(stops) - 1)
    out = torch.zeros(t.shape[0], 3)
    for k, stop in enumerate(stops):
        weight = (1.0 - (position - k).abs()).clamp(min=0.0)
        out = out + weight * torch.tensor(stop)
    return out


def mix(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """``a + (b - a) · t`` with ``t`` per row."""
    return a + (b - a) * t[:, None]


def face_params(attributes: torch.Tensor, nuisances: torch.Tensor) -> FaceParams:
    """Renderer parameters of n images from their identities' attributes and their nuisances."""
    a = {name: attributes[:, i] for name, i in INDEX.items()}
    z = {name: nuisances[:, i] for name, i in NUISANCE_INDEX.items()}
    n = attributes.shape[0]
    one = torch.ones(n)
    sin_yaw, cos_yaw = sin_small(z["yaw"]), cos_small(z["yaw"])
    sin_pitch = sin_small(z["pitch"])
    age = (a["age"] + z["age_offset"]).clamp(-1.0, 1.0)
    ageing = ((age - 0.1) / 0.9).clamp(0.0, 1.0)
    hair_style = HAIRSTYLE_TABLE[z["hairstyle"].long()]

    face_rx = 0.40 + 0.05 * a["face_width"]
    face_ry = 0.50 + 0.05 * a["face_length"]
    eye_y = -0.04 + 0.04 * a["eye_height"] + 0.25 * sin_pitch
    eye_dx = 0.155 + 0.03 * a["eye_spacing"]
    eye_w = 0.072 + 0.018 * a["eye_size"]
    nose_top = eye_y + 0.03
    nose_tip_y = eye_y + 0.17 + 0.04 * a["nose_length"] + 0.2 * sin_pitch
    mouth_y = 0.5 * (nose_tip_y + face_ry) + 0.02 + 0.1 * sin_pitch
    hairline = (-0.5 * face_ry + 0.06 * a["hairline"] + hair_style[:, 4]
                + 0.15 * sin_pitch)

    skin = palette((a["skin_tone"] + 1.0) * 0.5, SKIN)
    skin = skin + torch.stack([one, 0.0 * one, -one], dim=1) * (0.03 * a["skin_warmth"])[:, None]
    hair = palette((a["hair_darkness"] + 1.0) * 0.5, HAIR)
    hair = mix(hair, torch.tensor(RED_HAIR).expand(n, 3),
               a["hair_redness"].clamp(min=0.0) * 0.8 * (1.0 - a["hair_darkness"]) * 0.5)
    grey = mix(hair, torch.tensor(GREY_HAIR).expand(n, 3), ageing * 0.9)
    lips = mix(palette((a["lip_colour"] + 1.0) * 0.5, LIPS), skin, 0.2 * one)

    light_x = z["light_x"]
    light_y = z["light_y"]
    light_z = (1.0 - light_x * light_x - light_y * light_y).clamp(min=0.05).sqrt()
    temperature = 0.07 * z["temperature"]
    tint = torch.stack([1.0 + temperature, one, 1.0 - temperature], dim=1) * z["intensity"][:, None]

    return {
        # camera
        "cx": z["shift_x"], "cy": 0.1 + z["shift_y"], "scale": 1.35 * z["scale"],
        "cos_roll": cos_small(z["roll"]), "sin_roll": sin_small(z["roll"]),
        # head
        "face_x": 0.03 * sin_yaw, "face_rx": face_rx * (0.96 + 0.04 * cos_yaw),
        "face_ry": face_ry, "jaw_taper": 0.30 - 0.12 * a["jaw_width"],
        "ear_x_left": -face_rx * 0.96 * cos_yaw - 0.06 * sin_yaw,
        "ear_x_right": face_rx * 0.96 * cos_yaw - 0.06 * sin_yaw,
        "ear_y": eye_y + 0.07, "ear_rx": 0.05 + 0.012 * a["ear_size"],
        "ear_ry": 0.09 + 0.022 * a["ear_size"],
        # eyes and brows
        "eye_x_left": -eye_dx * cos_yaw + 0.25 * sin_yaw,
        "eye_x_right": eye_dx * cos_yaw + 0.25 * sin_yaw,
        "eye_y": eye_y, "eye_w_left": eye_w * (1.0 + 0.45 * sin_yaw),
        "eye_w_right": eye_w * (1.0 - 0.45 * sin_yaw),
        "eye_h": eye_w * 0.52 * z["eye_open"].clamp(0.08, 1.2), "iris_r": eye_w * 0.47,
        "gaze": 0.3 * z["gaze"] * eye_w,
        "brow_y": eye_y - 0.07 - 0.02 * z["brow_raise"] - 0.01 * a["eye_size"],
        "brow_x_left": -(eye_dx + 0.01) * cos_yaw + 0.28 * sin_yaw,
        "brow_x_right": (eye_dx + 0.01) * cos_yaw + 0.28 * sin_yaw,
        "brow_half": eye_w * 1.3, "brow_tilt": 0.025 * a["brow_angle"],
        "brow_thick": 0.011 + 0.0075 * (a["brow_thickness"] + 1.0),
        # nose and mouth
        "nose_top_x": 0.3 * sin_yaw, "nose_top_y": nose_top,
        "nose_tip_x": 0.45 * sin_yaw, "nose_tip_y": nose_tip_y,
        "nose_w": 0.045 + 0.014 * a["nose_width"],
        "mouth_x": 0.3 * sin_yaw, "mouth_y": mouth_y,
        "mouth_w": (0.105 + 0.025 * a["mouth_width"]) * (1.0 - 0.15 * sin_yaw.abs()),
        "lip_h": 0.02 + 0.009 * a["lip_fullness"], "smile": z["smile"],
        # hair, beard, age
        "hair_alpha": hair_style[:, 0], "hair_volume": hair_style[:, 1],
        "hair_side": hair_style[:, 2], "hair_back": hair_style[:, 3],
        "hair_texture": hair_style[:, 5], "hairline": hairline,
        "hair_x": -0.04 * sin_yaw, "beard": a["beard"], "wrinkles": ageing,
        # colours
        "skin": skin.clamp(0.0, 1.0), "hair": grey.clamp(0.0, 1.0),
        "brow": mix(hair, grey, 0.5 * one).clamp(0.0, 1.0) * 0.8,
        "iris": palette((a["eye_colour"] + 1.0) * 0.5, IRIS), "lips": lips.clamp(0.0, 1.0),
        "clothes": nuisances[:, [NUISANCE_INDEX[f"clothes_{c}"] for c in "rgb"]],
        "bg1": nuisances[:, [NUISANCE_INDEX[f"bg1_{c}"] for c in "rgb"]],
        "bg2": nuisances[:, [NUISANCE_INDEX[f"bg2_{c}"] for c in "rgb"]],
        "bg_grad_x": z["bg_grad_x"], "bg_grad_y": z["bg_grad_y"],
        "bg_texture": z["bg_texture"],
        # glasses and occluders
        "glasses": z["glasses"], "sunglasses": z["sunglasses"], "frame_tone": z["frame_tone"],
        "occluder": z["occluder"], "occ_x": z["occ_x"], "occ_y": z["occ_y"],
        "occ_size": z["occ_size"],
        "occ_colour": nuisances[:, [NUISANCE_INDEX[f"occ_{c}"] for c in "rgb"]],
        # light and camera
        "light_x": light_x, "light_y": light_y, "light_z": light_z,
        "ambient": z["ambient"], "tint": tint, "blur": z["blur"], "noise": z["noise"],
        "noise_seed": z["noise_seed"].long(),
    }


def slice_params(params: FaceParams, start: int, stop: int) -> FaceParams:
    """The parameters of images ``start..stop-1``."""
    return {name: value[start:stop] for name, value in params.items()}
