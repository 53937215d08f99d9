"""What a real world's splits contain, before any image is decoded.

A :class:`SplitPlan` lists files with their global identity ids; labels are assigned when the
split is built, after unreadable files are dropped: class ``k`` is the ``k``-th identity in plan
order that kept at least one image (so ``0..N-1`` stays contiguous).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mibench.datasets.real.images import Crop

# Global identity ids of sources without CelebA ids: FFHQ images are one identity each,
# identity folders are numbered in natural order; the offsets keep sources disjoint.
FFHQ_ID_OFFSET = 10_000_000
WILD_ID_OFFSET = 20_000_000


@dataclass
class SplitPlan:
    """Files of one split, each with its global identity id, and how to crop them."""

    name: str
    paths: list[Path]
    identities: list[int]
    crop: Crop
    labelled: bool = True

    def __len__(self) -> int:
        return len(self.paths)


def by_identity(paths: list[Path], identities: list[int]) -> dict[int, list[Path]]:
    """Paths grouped by identity, identities in first-seen order, paths in given order."""
    groups: dict[int, list[Path]] = {}
    for path, identity in zip(paths, identities):
        groups.setdefault(identity, []).append(path)
    return groups


def hold_out(groups: dict[int, list[Path]], fraction: float,
             crop: Crop) -> tuple[SplitPlan, SplitPlan]:
    """``private-train`` / ``private-test``: per identity the last ``round(n·fraction)`` files
    (at least one when it has two or more) are held out; the rest train."""
    train, test = SplitPlan("private-train", [], [], crop), SplitPlan("private-test", [], [], crop)
    for identity, paths in groups.items():
        held = 0 if len(paths) < 2 else min(len(paths) - 1, max(1, round(len(paths) * fraction)))
        for plan, chosen in ((train, paths[:len(paths) - held]), (test, paths[len(paths) - held:])):
            plan.paths += chosen
            plan.identities += [identity] * len(chosen)
    return train, test


def capped(groups: dict[int, list[Path]], identities: int,
           per_identity: int) -> dict[int, list[Path]]:
    """The first ``identities`` groups (0 = all), each cut to ``per_identity`` files (0 = all)."""
    chosen = list(groups.items())[:identities or None]
    return {identity: paths[:per_identity or None] for identity, paths in chosen}


def flat(name: str, groups: dict[int, list[Path]], crop: Crop,
         labelled: bool = True) -> SplitPlan:
    """One split holding every file of ``groups``."""
    plan = SplitPlan(name, [], [], crop, labelled)
    for identity, paths in groups.items():
        plan.paths += paths
        plan.identities += [identity] * len(paths)
    return plan
