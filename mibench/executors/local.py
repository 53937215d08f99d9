"""Cells one after another in this process (the default on one core or one GPU)."""

from __future__ import annotations

from typing import Iterator

import torch

from mibench.cell import CellSetting, run_cell
from mibench.executors.base import Batch, Finished


class LocalExecutor:
    """One cell after another in this process, on ``threads`` torch threads (0: torch's
    setting, untouched)."""

    def __init__(self, threads: int = 0) -> None:
        self.threads = threads

    def run(self, batch: Batch) -> Iterator[Finished]:
        if not batch.keys:
            return
        if self.threads:
            torch.set_num_threads(self.threads)
        setting = CellSetting.build(batch.tree, show_progress=batch.show_progress)
        for key in batch.keys:
            batch.on_start(key)
            yield key, run_cell(setting, key)
