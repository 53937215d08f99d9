"""Local process pool (``--workers``): layout of processes and threads, and a pooled run that
gives the numbers of a serial one, plugins included."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mibench.errors import ConfigError
from mibench.executors import LocalExecutor, PoolExecutor, choose_executor
from mibench.executors.pool import worker_layout
from mibench.runconfig import resolve
from mibench.store import Store

PLUGIN = '''
import torch
from mibench.attack import Attack, AttackSpec
from mibench.registry import ATTACKS


@ATTACKS.register("flat-grey")
class FlatGrey(Attack):
    spec = AttackSpec(name="flat-grey", title="Flat grey", paper="Test", year=2026,
                      access="labels", prior="none")

    def invert(self, target, labels, ctx):
        return torch.full((len(labels), 3, 32, 32), 0.5)
'''


def test_worker_layout_splits_the_cores():
    cpu = torch.device("cpu")
    assert worker_layout(0, cpu, cores=2) == (2, 1)  # auto: one per core …
    assert worker_layout(0, cpu, cores=16) == (4, 4)  # … at most four, sharing the cores
    assert worker_layout(3, cpu, cores=2) == (3, 1)
    assert worker_layout(1, cpu, cores=16) == (1, 0)  # in this process, threads untouched
    assert worker_layout(0, torch.device("cuda"), cores=16) == (1, 0)


def test_the_executor_is_always_a_real_one():
    run = {"executor": "local", "device": "cpu"}
    assert isinstance(choose_executor({**run, "workers": 1}), LocalExecutor)
    pooled = choose_executor({**run, "workers": 3})
    assert isinstance(pooled, PoolExecutor) and pooled.workers == 3


def test_workers_are_for_the_local_executor_only():
    with pytest.raises(ConfigError, match="--workers 2 is for the local executor"):
        resolve("smoke", flags={"workers": 2, "executor": "ray"})
    assert resolve("smoke")["run"]["workers"] == 1  # smoke cells are too small to spread
    assert resolve("mini")["run"]["workers"] == 0


def test_cells_in_worker_processes_give_the_serial_numbers(tmp_path: Path, smoke_cache: str):
    plugin = tmp_path / "flat_grey.py"
    plugin.write_text(PLUGIN)
    results = tmp_path / "runs"
    for workers in ("1", "2"):
        done = subprocess.run(
            [sys.executable, "-m", "mibench", "--plugin", str(plugin), "run", "--preset",
             "smoke", "--attacks", "gmi,flat-grey", "--targets", "arcface", "--seed", "3",
             "--workers", workers, "--cache-dir", smoke_cache, "--results-dir", str(results),
             "--quiet"], cwd=tmp_path, capture_output=True, text=True, timeout=600,
            env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert done.returncode == 0, done.stdout + done.stderr
    store = Store(results)
    serial, pooled = ({(m["attack"], m["subset"], m["name"]): m["value"]
                       for m in store.metrics(run_id)} for run_id in store.run_ids())
    assert {attack for attack, _, _ in pooled} == {"gmi", "flat-grey"}
    assert pooled == serial
    pooled_run = store.run_ids()[-1]
    assert all(cell["status"] == "done" for cell in store.cells(pooled_run))
    for attack in ("gmi", "flat-grey"):
        assert (results / pooled_run / attack / "arcface-18" / "images").is_dir()


def test_cells_are_scheduled_longest_first_from_earlier_runs(tmp_path: Path):
    from mibench.store import CellKey

    store = Store(tmp_path)
    for run_id, preset, seconds in (("r1", "mini", {"gmi": 90.0, "fgmia": 5.0}),
                                    ("r2", "smoke", {"gmi": 1.0, "fgmia": 9.0}),
                                    ("r3", "mini", {"gmi": 80.0})):
        store.create_run(run_id, {"preset": preset}, {}, "cpu", "test")
        for attack, spent in seconds.items():
            key = CellKey(run_id, attack, "arcface-18", "similar", 0)
            store.add_cells([key])
            store.start_cell(key)
            store.finish_cell(key, [], {"prepare_s": 500.0, "attack_s": spent / 2,
                                        "select_s": spent / 4, "eval_s": spent / 4}, {}, "x")
    # the latest finished cell per (attack, target) at the preset; priors are not counted
    assert store.cell_costs("mini") == {("gmi", "arcface-18"): 80.0,
                                        ("fgmia", "arcface-18"): 5.0}
    assert store.cell_costs("paper") == {}


SLEEPY = '''
import time
import torch
from mibench.attack import Attack, AttackSpec
from mibench.registry import ATTACKS


@ATTACKS.register("sleepy")
class Sleepy(Attack):
    spec = AttackSpec(name="sleepy", title="Sleepy", paper="Test", year=2026, access="labels",
                      prior="none")

    def invert(self, target, labels, ctx):
        time.sleep(600)
        return torch.full((len(labels), 3, 32, 32), 0.5)
'''


def _alive(pid: int) -> bool:
    """Running (a zombie, waiting to be reaped, has ended)."""
    try:
        return "\tZ" not in Path(f"/proc/{pid}/status").read_text().split("State:")[1][:4]
    except (FileNotFoundError, IndexError):
        return False


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc")
def test_workers_end_when_the_driver_is_killed(tmp_path: Path, smoke_cache: str):
    plugin = tmp_path / "sleepy.py"
    plugin.write_text(SLEEPY)
    driver = subprocess.Popen(
        [sys.executable, "-m", "mibench", "--plugin", str(plugin), "run", "--preset", "smoke",
         "--attacks", "sleepy", "--targets", "arcface,cosface",
         "--workers", "2", "--cache-dir", smoke_cache, "--results-dir", str(tmp_path / "runs"),
         "--quiet"], cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        workers: list[int] = []
        while len(workers) < 2 and time.monotonic() < deadline:  # the two sleeping workers
            time.sleep(1)
            children = Path(f"/proc/{driver.pid}/task/{driver.pid}/children")
            pids = [int(p) for p in children.read_text().split()] if children.exists() else []
            workers = [p for p in pids if "spawn_main" in
                       Path(f"/proc/{p}/cmdline").read_bytes().decode(errors="replace")]
        assert len(workers) == 2, "the pool did not start two workers"
        time.sleep(3)  # let them enter the sleeping cells
    finally:
        driver.kill()
        driver.wait()
    deadline = time.monotonic() + 30
    while any(_alive(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not any(_alive(p) for p in workers)
