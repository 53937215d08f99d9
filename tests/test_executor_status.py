"""Pool workers' status lines (issue 23.3): a worker's attack progress bars reach the driver's
board, and a worker never blocks when the driver stops reading."""

from __future__ import annotations

import queue

import pytest

from mibench.attack import set_progress_factory
from mibench.executors.status import StatusBoard, StatusReporter
from mibench.store import CellKey
from mibench.testing import toy_context


@pytest.fixture
def reporter():
    updates: queue.Queue = queue.Queue(maxsize=64)
    reporter = StatusReporter(updates, index=0)
    reporter.install()
    yield reporter
    set_progress_factory(None)


def test_a_prior_bar_in_a_worker_shows_as_its_status_line(reporter, tmp_path):
    board = StatusBoard(reporter.updates, workers=2, enabled=False)
    reporter.start_cell(CellKey("r", "gmi", "arcface-18", "similar", 0))
    board.drain()
    assert board.status[0] == "w1: gmi×arcface-18"
    ctx = toy_context(cache=tmp_path)  # progress off, as in a worker: the board shows it
    bar = ctx.progress(range(10), desc="WGAN-GP prior", unit="step", mininterval=0)
    for step in bar:
        if step == 3:
            board.drain()
            assert board.status[0] == "w1: gmi×arcface-18 WGAN-GP prior 30%"
    board.drain()
    assert board.status[0] == "w1: gmi×arcface-18"  # the bar closed
    with ctx.progress(total=4, desc="metrics gmi×arcface-18", mininterval=0) as metrics:
        metrics.update()
        board.drain()
        assert board.status[0] == "w1: gmi×arcface-18 metrics 25%"  # the cell named once
    assert board.status[1] == "w2: starting"
    board.close()


def test_a_worker_never_blocks_on_a_full_queue(reporter):
    reporter.updates = queue.Queue(maxsize=1)
    for step in range(100):
        reporter.send(f"step {step}")  # the driver reads nothing: updates are dropped
    assert reporter.updates.get_nowait() == (0, "step 0")
