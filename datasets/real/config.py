"""Configuration of a real-data world: where the folders are, the split and the sizes.

Defaults are the paper's setting (paper.md "Setting", attacks.md §8.2): FGMIA's CelebA split with
1,000 private (Mini2) and 1,000 aux (Mini1) identities at 112 px; ``smoke`` and ``mini`` only
take fewer identities and images and a lower resolution.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

from mibench.config import Config, param
from mibench.errors import ConfigError

SPLIT_SCHEMES = ("fgmia", "gmi")


@dataclass
class RealWorldConfig(Config):
    """Folders, split and sizes of a world built from real face images (design.md §3)."""

    root: str = param("", "the dataset folder (celeba: holds img_align_celeba/ and "
                      "identity_CelebA.txt; folders: one sub-folder per identity)")
    split: str = param("fgmia", "CelebA split: fgmia (computed from the identity file) or gmi "
                       "(the GMI/KEDMI lists in split_dir)", choices=SPLIT_SCHEMES)
    split_dir: str = param("", "folder of the GMI/KEDMI split lists (split=gmi)")
    resolution: int = param(112, "image side in pixels", ge=16, le=512)
    private_identities: int = param(1000, "private identities (target classes); CelebA fgmia: "
                                    "the size of Mini1 and Mini2", ge=2)
    private_test_fraction: float = param(0.1, "share of each private identity's images held "
                                         "out as private-test (at least one of two or more)",
                                         gt=0.0, lt=1.0)
    max_per_identity: int = param(0, "images per identity in labelled splits (0 = all)", ge=0)
    aux_identities: int = param(1000, "identities in aux (at most what the split has)", ge=1)
    public_identities: int = param(0, "identities in public (0 = all the rest)", ge=0)
    aux_hq_root: str = param("", "FFHQ folder for the aux-hq split ('' = no aux-hq)")
    aux_hq_images: int = param(30000, "images taken from aux_hq_root (0 = all); 30,000 is ours "
                               "(the paper names FFHQ-128 but no count; about the size of the "
                               "similar aux split, CelebA-Mini1)", ge=0)
    aux_wild_root: str = param("", "VGGFace2 (identity-per-folder) folder for the aux-wild "
                               "split ('' = no aux-wild)")
    aux_wild_identities: int = param(1000, "identities taken from aux_wild_root (0 = all); "
                                     "the paper's VGGFace2-Mini has 1,000", ge=0)
    align: bool = param(False, "align faces by 5 landmarks to the ArcFace 112×112 template "
                        "instead of the crop conventions (needs `pip install 'mibench[align]'`)")
    verify_listing: bool = param(False, "check every image's size and mtime for the cache key, "
                                 "not only the folders' listings (slow on network filesystems; "
                                 "finds files rewritten in place)")

    presets: ClassVar[Mapping[str, Mapping[str, Any]]] = {
        "smoke": {"resolution": 32, "private_identities": 4, "aux_identities": 4,
                  "public_identities": 8, "max_per_identity": 6, "aux_hq_images": 16,
                  "aux_wild_identities": 4},
        "mini": {"resolution": 64, "private_identities": 50, "aux_identities": 50,
                 "public_identities": 250, "max_per_identity": 30, "aux_hq_images": 1200,
                 "aux_wild_identities": 50},
        "paper": {},
    }

    def identity(self) -> dict[str, Any]:
        """``to_dict()`` without ``verify_listing``, which says how the key is checked, not
        what the world holds: the part of the world's cache key."""
        return {k: v for k, v in self.to_dict().items() if k != "verify_listing"}

    def validate(self) -> None:
        if not self.root:
            raise ConfigError("a real-data world needs its folder: pass --root PATH (or set "
                              "world.root)")
        if self.split == "gmi" and not self.split_dir:
            raise ConfigError("world.split=gmi needs the GMI/KEDMI lists: --set "
                              "world.split_dir=PATH")
