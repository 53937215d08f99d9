"""What an executor is given and what it hands back.

An executor gets a :class:`Batch`: the resolved configuration tree, the cells to run, whether
to show progress, a callback to call as each cell is handed to a worker, and what earlier runs
say each kind of cell costs. It never sees the harness, the results store or the images: it
yields each cell's :class:`~mibench.cell.CellOutcome` (or :class:`~mibench.cell.CellFailure`)
and the harness records it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Protocol

from mibench.cell import CellFailure, CellOutcome
from mibench.store import CellKey

Finished = tuple[CellKey, CellOutcome | CellFailure]


@dataclass(frozen=True)
class Batch:
    """The cells an executor is asked to run, and all it needs to know about them."""

    tree: dict[str, Any]
    keys: tuple[CellKey, ...]
    on_start: Callable[[CellKey], None]
    show_progress: bool = True
    # seconds of attack, selection and metrics per (attack, target), from earlier runs
    expected_costs: Mapping[tuple[str, str], float] = field(default_factory=dict)

    @property
    def preset(self) -> str:
        return self.tree["preset"]


class Executor(Protocol):
    """Runs a batch's cells and yields each one's outcome as it finishes, calling
    ``batch.on_start`` for a cell when it is handed to a worker."""

    def run(self, batch: Batch) -> Iterator[Finished]: ...
