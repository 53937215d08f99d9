"""Identity attributes: the vector that makes one synthetic person differ from another.

An identity is a point in a space of facial attributes, modelled on what face-recognition
datasets vary in (face shape, skin tone, eye/brow/nose/mouth geometry and colour, hair colour,
ear size, age) plus a few discrete traits (hairstyle, beard, glasses) like the binary CelebA
attributes. Continuous attributes are uniform in [-1, 1]; discrete ones are category indices
stored as floats in the same vector. The world saves these vectors: they are the ground truth of
what an inversion attack could leak.
"""

from __future__ import annotations

import torch

CONTINUOUS: tuple[tuple[str, str], ...] = (
    ("face_width", "half-width of the face oval"),
    ("face_length", "half-height of the face oval"),
    ("jaw_width", "jaw breadth (narrow, tapered chin to square jaw)"),
    ("skin_tone", "skin lightness, light to dark"),
    ("skin_warmth", "skin undertone, cool to warm"),
    ("eye_spacing", "distance between the eyes"),
    ("eye_size", "eye width"),
    ("eye_height", "vertical position of the eyes"),
    ("eye_colour", "iris colour, blue through green and hazel to dark brown"),
    ("brow_thickness", "eyebrow thickness"),
    ("brow_angle", "eyebrow slant, drooping to arched"),
    ("nose_length", "nose length"),
    ("nose_width", "nose width"),
    ("mouth_width", "mouth width"),
    ("lip_fullness", "lip thickness"),
    ("lip_colour", "lip colour, pale to red"),
    ("hair_darkness", "hair colour, blond to black"),
    ("hair_redness", "red tint of the hair"),
    ("hairline", "forehead height"),
    ("ear_size", "ear size"),
    ("age", "age, young to old (greying hair, wrinkles)"),
)

HAIRSTYLES = ("short", "long", "bob", "bangs", "buzz", "curly")
DISCRETE: tuple[tuple[str, tuple[str, ...], tuple[float, ...]], ...] = (
    ("hairstyle", HAIRSTYLES, (0.28, 0.24, 0.14, 0.12, 0.12, 0.10)),
    ("beard", ("none", "stubble", "full"), (0.72, 0.14, 0.14)),
    ("glasses", ("no", "yes"), (0.85, 0.15)),
)

ATTRIBUTE_NAMES: tuple[str, ...] = (*(n for n, _ in CONTINUOUS), *(n for n, _, _ in DISCRETE))
INDEX: dict[str, int] = {name: i for i, name in enumerate(ATTRIBUTE_NAMES)}

# Age range of the identities a style draws (attribute units): CelebA and FFHQ skew young,
# VGGFace2 spans all ages.
AGE_RANGE: dict[str, tuple[float, float]] = {
    "celeba": (-1.0, 0.2), "hq": (-1.0, 0.5), "wild": (-1.0, 1.0)}


def sample_identities(n: int, style: str, generator: torch.Generator) -> torch.Tensor:
    """``n`` identity vectors (n × len(ATTRIBUTE_NAMES), float32) for a split of ``style``."""
    continuous = torch.rand(n, len(CONTINUOUS), generator=generator) * 2.0 - 1.0
    low, high = AGE_RANGE[style]
    age = INDEX["age"]
    continuous[:, age] = low + (continuous[:, age] + 1.0) * 0.5 * (high - low)
    discrete = [categorical(torch.rand(n, generator=generator), probs)
                for _, _, probs in DISCRETE]
    return torch.cat([continuous, torch.stack(discrete, dim=1)], dim=1)


def categorical(uniform: torch.Tensor, probs: tuple[float, ...]) -> torch.Tensor:
    """Category index (as float) of each uniform draw under the probabilities ``probs``."""
    edges = torch.tensor(probs).cumsum(0)[:-1]
    return (uniform[:, None] >= edges[None, :]).sum(dim=1).float()
