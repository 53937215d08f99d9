"""Cells one after another in this process (the default on one core or on CUDA)."""

from __future__ import annotations

from typing import Iterator

from mibench.cell import CellSetting, run_cell
from mibench.executors.base import Batch, Finished


class LocalExecutor:
    """One cell after another in this process."""

    def run(self, batch: Batch) -> Iterator[Finished]:
        if not batch.keys:
            return
        setting = CellSetting.build(batch.tree, show_progress=batch.show_progress)
        for key in batch.keys:
            batch.on_start(key)
            yield key, run_cell(setting, key)
