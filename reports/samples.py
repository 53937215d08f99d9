"""Per-cell sample grids: each identity's private images beside the attack's generated ones."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from mibench.reports.figures import image_uri
from mibench.reports.private import PrivateView
from mibench.reports.runs import CellRecord

MAX_IDENTITIES = 8   # rows of a grid
MAX_GENERATED = 8    # generated images per row (the selected one is always among them)
PRIVATE_PER_ROW = 4


@dataclass(frozen=True)
class Thumb:
    uri: str
    selected: bool = False


@dataclass
class GridRow:
    identity: int
    private: list[Thumb]
    generated: list[Thumb]


@dataclass
class SampleGrid:
    """The grid of one cell, or the note saying why it has none."""

    attack: str
    target: str
    rows: list[GridRow] = field(default_factory=list)
    note: str | None = None
    hidden_identities: int = 0


@dataclass(frozen=True)
class Samples:
    """A cell's stored ``samples.pt``: uint8 images, class labels, one selected index each."""

    images: torch.Tensor
    labels: torch.Tensor
    selected: torch.Tensor

    @property
    def classes(self) -> list[int]:
        return sorted(set(self.labels.tolist()))


def load_samples(folder: Path | None) -> Samples | None:
    path = None if folder is None else folder / "samples.pt"
    if path is None or not path.is_file():
        return None
    # Memory-mapped: a grid reads its few thumbnails, not every image of the cell.
    data = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    return Samples(data["images"], data["labels"], data["selected"])


def sample_grid(cell: CellRecord, samples: Samples | None, private: PrivateView | None,
                label: str | None = None) -> SampleGrid:
    """``label`` names the cell's attack (default: the attack's name)."""
    grid = SampleGrid(label or cell.attack, cell.target)
    if not cell.done:
        grid.note = f"{cell.status}: {cell.error}" if cell.error else cell.status
        return grid
    if samples is None:
        grid.note = f"images missing (no samples.pt in {cell.images})"
        return grid
    chosen = set(samples.selected.tolist())
    classes = samples.classes
    grid.hidden_identities = max(0, len(classes) - MAX_IDENTITIES)
    for label in classes[:MAX_IDENTITIES]:
        index = torch.nonzero(samples.labels == label).flatten().tolist()
        picked = [i for i in index if i in chosen]
        shown = picked + [i for i in index if i not in chosen][:MAX_GENERATED - len(picked)]
        generated = [Thumb(image_uri(samples.images[i]), i in chosen) for i in shown]
        own = [] if private is None else [Thumb(image_uri(img))
                                           for img in private.images_of(label, PRIVATE_PER_ROW)]
        grid.rows.append(GridRow(label, own, generated))
    return grid
