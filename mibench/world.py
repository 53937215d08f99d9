"""The world contract: named splits of face images with identities (design.md §3).

A world is what a benchmark runs in: private data (which trains the targets and is never shown
to an attack), auxiliary data (what an attacker may use), and a public pool for pre-training
open-set targets. Every split stores images as ``uint8`` N×3×H×W (RGB) and hands them out as
float tensors in [0, 1], the one image contract of the suite.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator

import torch
from torch.utils.data import Dataset

from mibench.errors import UnknownNameError

PRIVATE_SPLITS = ("private-train", "private-test")
AUX_SPLITS = {"similar": "aux", "hq": "aux-hq", "wild": "aux-wild"}
SPLITS = (*PRIVATE_SPLITS, "aux", "aux-hq", "aux-wild", "public")
UNLABELLED = -1


@dataclass
class Split:
    """One split of a world.

    ``labels`` are the class indices an attacker or trainer may see (``UNLABELLED`` where the
    analogue dataset has no identity labels, e.g. FFHQ for ``aux-hq``). For the private splits
    they are the target's class indices ``0..num_private-1``. ``identities`` are the world's
    global identity ids (ground truth, always present); ``attributes`` holds the ground-truth
    attribute vector of each image's identity when the world knows it (synthetic worlds).
    """

    name: str
    images: torch.Tensor
    labels: torch.Tensor
    identities: torch.Tensor
    attributes: torch.Tensor | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = self.images.shape[0]
        if self.images.dtype != torch.uint8 or self.images.ndim != 4 or self.images.shape[1] != 3:
            raise ValueError(f"split {self.name}: images must be uint8 N×3×H×W, got "
                             f"{self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.shape != (n,) or self.identities.shape != (n,):
            raise ValueError(f"split {self.name}: labels/identities must have shape ({n},)")

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def resolution(self) -> int:
        return self.images.shape[-1]

    @property
    def num_classes(self) -> int:
        labelled = self.labels[self.labels != UNLABELLED]
        return int(labelled.max()) + 1 if labelled.numel() else 0

    def float_images(self, index: torch.Tensor | slice | None = None) -> torch.Tensor:
        """Images (all, or ``index``) as float32 in [0, 1]."""
        chosen = self.images if index is None else self.images[index]
        return chosen.float().div_(255.0)

    def of_class(self, label: int) -> torch.Tensor:
        """Indices of the images with class ``label``."""
        return torch.nonzero(self.labels == label).flatten()

    def batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Ordered (images in [0,1], labels) batches, for feature extraction and evaluation."""
        for start in range(0, len(self), batch_size):
            stop = min(start + batch_size, len(self))
            yield self.float_images(slice(start, stop)), self.labels[start:stop]

    def dataset(self) -> "SplitDataset":
        return SplitDataset(self)


class SplitDataset(Dataset):
    """``torch.utils.data.Dataset`` view over a split: ``(image in [0,1], label)``."""

    def __init__(self, split: Split) -> None:
        self.split = split

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.split.images[i].float() / 255.0, int(self.split.labels[i])


@dataclass
class World:
    """A named set of splits with a content fingerprint (used as the cache's data key)."""

    name: str
    fingerprint: str
    splits: dict[str, Split]
    meta: dict[str, Any] = field(default_factory=dict)

    def split(self, name: str) -> Split:
        if name not in self.splits:
            raise UnknownNameError(f"world {self.name!r} has no split {name!r}; "
                                   f"splits are: {', '.join(self.splits)}")
        return self.splits[name]

    def aux(self, kind: str = "similar") -> Split:
        """The auxiliary split an attacker gets: ``similar``, ``hq`` or ``wild``."""
        if kind not in AUX_SPLITS:
            raise UnknownNameError(f"unknown aux kind {kind!r}; choose one of "
                                   f"{', '.join(AUX_SPLITS)}")
        return self.split(AUX_SPLITS[kind])

    @property
    def num_private(self) -> int:
        return self.split("private-train").num_classes

    @property
    def resolution(self) -> int:
        return self.split("private-train").resolution

    def summary(self) -> WorldSummary:
        """This world's :class:`WorldSummary`."""
        return WorldSummary(self.name, self.fingerprint, self.num_private)


@dataclass(frozen=True)
class WorldSummary:
    """A world's identity without its images: name, fingerprint (the very string the built
    world carries, so every cache key derived from it is the same) and number of private
    identities (the target classes). A dataset's ``summary(config, cache)`` derives it from the
    config (and, for real data, the file listing) without rendering or decoding anything."""

    name: str
    fingerprint: str
    num_private: int
