"""What each pool worker is doing, shown under the driver's cells bar (issue 23.3).

A worker sends one-line updates — its cell, and the progress bar it runs (a prior's training,
the metrics) — through a bounded queue; :class:`StatusBoard` in the driver shows the latest of
each worker as a status line, e.g. ``w1: gmi×arcface-18 WGAN-GP prior 37%``. Workers never
block on it: when the driver falls behind (or stopped reading), updates are dropped.
"""

from __future__ import annotations

import queue
from functools import partial
from typing import Any

from tqdm.auto import tqdm

from mibench.attack import set_progress_factory
from mibench.store import CellKey

STATUS_QUEUE_SIZE = 256
STATUS_INTERVAL_S = 1.0  # at most one update per bar and second


class StatusReporter:
    """A worker's end: sends ``(worker index, line)`` to the driver, dropping it when the
    queue is full."""

    def __init__(self, updates: Any, index: int) -> None:
        self.updates = updates
        self.index = index
        self.cell = "starting"

    def start_cell(self, key: CellKey) -> None:
        self.cell = f"{key.attack}×{key.target}"
        self.send(self.cell)

    def send(self, line: str) -> None:
        try:
            self.updates.put_nowait((self.index, line))
        except queue.Full:
            return  # the driver is behind: this update is stale before it is read

    def install(self) -> None:
        """Forward every attack progress bar of this process (:class:`ForwardingBar`)."""
        set_progress_factory(partial(ForwardingBar, reporter=self))


class _Discard:
    """A file that swallows what tqdm writes (the driver draws the line instead)."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        """Nothing is buffered."""


class ForwardingBar(tqdm):
    """A tqdm bar that draws nothing here and sends its state to the driver instead."""

    def __init__(self, iterable: Any = None, *, reporter: StatusReporter, **kwargs: Any) -> None:
        self.reporter = reporter
        kwargs.setdefault("mininterval", STATUS_INTERVAL_S)
        super().__init__(iterable, file=_Discard(), **{**kwargs, "disable": False})

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        state = self.format_dict
        n, total = state["n"], state["total"]
        done = f"{100 * n / total:.0f}%" if total else f"{n} {state['unit']}"
        stage = self.desc.replace(self.reporter.cell, "").strip()  # "metrics gmi×arcface-18"
        self.reporter.send(" ".join(part for part in (self.reporter.cell, stage, done) if part))
        return True

    def close(self) -> None:
        super().close()
        self.reporter.send(self.reporter.cell)


class StatusBoard:
    """The driver's end: one status line per worker under the cells bar."""

    def __init__(self, updates: Any, workers: int, *, enabled: bool = True) -> None:
        self.updates = updates
        self.status = [f"w{i + 1}: starting" for i in range(workers)]
        self.lines = [tqdm(total=0, position=i + 1, bar_format="{desc}", leave=False,
                           desc=status, disable=not enabled)
                      for i, status in enumerate(self.status)]

    def drain(self) -> None:
        """Show the updates that arrived since the last call (the latest per worker)."""
        latest: dict[int, str] = {}
        while True:
            try:
                index, line = self.updates.get_nowait()
            except queue.Empty:
                break
            latest[index] = line
        for index, line in latest.items():
            if 0 <= index < len(self.lines):
                self.status[index] = f"w{index + 1}: {line}"
                self.lines[index].set_description_str(self.status[index])

    def close(self) -> None:
        for line in self.lines:
            line.close()
