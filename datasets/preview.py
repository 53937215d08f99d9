"""A one-page PNG preview of a world: one panel per split, one row per identity.

This is what ``mibench data show`` writes. Rows show the first identities of a split with their
global identity id, columns several images of that identity, so identity (rows differ) and
nuisances (columns differ) can be judged at a glance. Splits without identity labels (aux-hq)
show one image per cell.
"""

from __future__ import annotations

import os
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the headless backend is chosen)
import numpy as np  # noqa: E402
import torch  # noqa: E402

from mibench.world import SPLITS, UNLABELLED, Split, World  # noqa: E402

GAP = 2  # pixels between cells


def split_rows(split: Split, identities: int, images: int) -> list[tuple[str, torch.Tensor]]:
    """(row label, indices) for the first ``identities`` identities, ``images`` each."""
    if bool((split.labels == UNLABELLED).all()):
        count = min(len(split), identities * images)
        return [(f"#{start}", torch.arange(start, min(start + images, count)))
                for start in range(0, count, images)]
    rows = []
    for identity in torch.unique(split.identities)[:identities].tolist():
        indices = torch.nonzero(split.identities == identity).flatten()[:images]
        rows.append((f"id {identity}", indices))
    return rows


def mosaic(split: Split, rows: list[tuple[str, torch.Tensor]], images: int) -> np.ndarray:
    """H×W×3 uint8 grid of the rows' images on a white background."""
    side = split.resolution
    cell = side + GAP
    out = np.full((len(rows) * cell - GAP, images * cell - GAP, 3), 255, dtype=np.uint8)
    for r, (_, indices) in enumerate(rows):
        for c, index in enumerate(indices.tolist()):
            image = split.images[index].permute(1, 2, 0).numpy()
            out[r * cell:r * cell + side, c * cell:c * cell + side] = image
    return out


def save_preview(world: World, path: str | os.PathLike[str],
                 splits: Sequence[str] | None = None, identities: int = 6,
                 images: int = 8) -> None:
    """Write one PNG with a labelled panel per split (default: every split of the world)."""
    names = list(splits) if splits is not None else [s for s in SPLITS if s in world.splits]
    if not names:
        raise ValueError("save_preview: no splits to show; pass split names of the world")
    columns = 2 if len(names) > 1 else 1
    panel_rows = (len(names) + columns - 1) // columns
    inch = 0.75  # per image cell
    figure, axes = plt.subplots(panel_rows, columns, squeeze=False,
                                figsize=(columns * (images * inch + 0.9),
                                         panel_rows * (identities * inch + 0.6)))
    for ax in axes.flat:
        ax.axis("off")
    for ax, name in zip(axes.flat, names):
        split = world.split(name)
        rows = split_rows(split, identities, images)
        ax.axis("on")
        ax.imshow(mosaic(split, rows, images), interpolation="nearest")
        cell = split.resolution + GAP
        ax.set_yticks([r * cell + split.resolution / 2 for r in range(len(rows))],
                      [label for label, _ in rows], fontsize=7)
        ax.set_xticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
        style = split.meta.get("style", "")
        labelled = "unlabelled" if bool((split.labels == UNLABELLED).all()) else (
            f"{int(torch.unique(split.identities).numel())} identities")
        ax.set_title(f"{name} ({style}): {len(split)} images, {labelled}", fontsize=9)
    figure.suptitle(f"world {world.name} {world.fingerprint} at {world.resolution} px "
                    f"(rows: identities, columns: images)", fontsize=10)
    figure.tight_layout()
    dpi = max(72, round(world.resolution / inch))  # about one screen pixel per image pixel
    figure.savefig(os.fspath(path), dpi=dpi)
    plt.close(figure)
