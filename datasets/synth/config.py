"""Configuration of the synthetic face world: style, resolution and the size of every split.

Defaults follow the paper's setting (paper.md, "Setting"): 1,000 private identities
(CelebA-Mini2 analogue), 1,000 disjoint auxiliary identities with ~30k images (CelebA-Mini1),
an FFHQ-like unlabelled high-quality split, a VGGFace2-like split with larger pose and age range,
and a public pool of further identities for pre-training open-set targets. At 112 px the whole
paper world is ~105k images, about 4 GB of uint8 arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

from mibench.config import Config, param

STYLES = ("celeba", "hq", "wild")


@dataclass
class WorldConfig(Config):
    """Sizes, style and seed of a synthetic face world (design.md §3)."""

    style: str = param("celeba", "style of the private, aux and public splits "
                       "(aux-hq is always 'hq', aux-wild always 'wild')", choices=STYLES)
    resolution: int = param(112, "image side in pixels", ge=16, le=512)
    supersample: int = param(1, "render at this multiple of the resolution, then average-pool; "
                             "1 = analytic edge antialiasing only (4x faster)", ge=1, le=4)
    private_identities: int = param(1000, "identities in the private data (target classes)",
                                    ge=2)
    private_train_per_identity: int = param(24, "private training images per identity", ge=1)
    private_test_per_identity: int = param(6, "held-out private images per identity", ge=1)
    aux_identities: int = param(1000, "identities in the similar-distribution aux split", ge=1)
    aux_per_identity: int = param(30, "images per aux identity", ge=1)
    aux_hq_images: int = param(10000, "images in the unlabelled high-quality aux split "
                               "(one identity each, like FFHQ)", ge=1)
    aux_wild_identities: int = param(1000, "identities in the pose/age-shifted aux split", ge=1)
    aux_wild_per_identity: int = param(15, "images per aux-wild identity", ge=1)
    public_identities: int = param(2000, "identities in the public pre-training pool", ge=2)
    public_per_identity: int = param(10, "images per public identity", ge=1)
    seed: int = param(0, "seed of every random draw in the world", ge=0)

    presets: ClassVar[Mapping[str, Mapping[str, Any]]] = {
        "smoke": {"resolution": 32, "supersample": 2, "private_identities": 8,
                  "private_train_per_identity": 6, "private_test_per_identity": 2,
                  "aux_identities": 8, "aux_per_identity": 4, "aux_hq_images": 24, "aux_wild_identities": 8, "aux_wild_per_identity": 4,
                  "public_identities": 16, "public_per_identity": 4},
        "mini": {"resolution": 64, "supersample": 1, "private_identities": 50, "private_train_per_identity": 24,
                 "private_test_per_identity": 8, "aux_identities": 50, "aux_per_identity": 24,
                 "aux_hq_images": 1200, "aux_wild_identities": 50, "aux_wild_per_identity": 24,
                 "public_identities": 250, "public_per_identity": 20},
        "paper": {},
    }

    def num_images(self) -> int:
        """Total images over all splits."""
        return (self.private_identities * (self.private_train_per_identity
                                           + self.private_test_per_identity)
                + self.aux_identities * self.aux_per_identity + self.aux_hq_images
                + self.aux_wild_identities * self.aux_wild_per_identity
                + self.public_identities * self.public_per_identity)
