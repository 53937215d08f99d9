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

from mibench import executors
from mibench.errors import ConfigError
from mibench.executors import Batch, LocalExecutor, PoolExecutor, choose_executor, layout
from mibench.executors.layout import worker_layout
from mibench.executors.ordering import submission_order
from mibench.registry import load_plugin_file
from mibench.runconfig import resolve
from mibench.store import CellKey, Store

PLUGIN = '''
import os
import torch
from mibench.attack import Attack, AttackSpec
from mibench.registry import ATTACKS


@ATTACKS.register("flat-grey")
class FlatGrey(Attack):
    spec = AttackSpec(name="flat-grey", title="Flat grey", paper="Test", year=2026,
                      access="labels", prior="none")

    def invert(self, target, labels, ctx):
        return torch.full((len(labels), 3, 32, 32), 0.5)


@ATTACKS.register("env-grey")
class EnvGrey(FlatGrey):
    """Grey images whose level is the CUDA_VISIBLE_DEVICES its worker was given, / 10."""

    spec = AttackSpec(name="env-grey", title="Env grey", paper="Test", year=2026,
                      access="labels", prior="none")

    def invert(self, target, labels, ctx):
        level = int(os.environ.get("CUDA_VISIBLE_DEVICES", "0")) / 10
        return torch.full((len(labels), 3, 32, 32), level)
'''


def test_worker_layout_splits_the_cores():
    cpu = torch.device("cpu")
    assert worker_layout(0, cpu, cores=2, load=0) == (2, 1)  # auto: one per core …
    assert worker_layout(0, cpu, cores=16, load=0) == (4, 4)  # … at most four, sharing them
    assert worker_layout(3, cpu, cores=2, load=0) == (3, 1)
    assert worker_layout(1, cpu, cores=16, load=0) == (1, 0)  # here, threads untouched
    assert worker_layout(0, torch.device("cuda"), cores=16, load=0, gpus=1) == (1, 0)
    assert worker_layout(0, cpu, cores=16, load=0, threads=2) == (4, 2)  # run.threads


def test_a_loaded_machine_gets_fewer_threads_per_worker(monkeypatch: pytest.MonkeyPatch):
    cpu = torch.device("cpu")
    # issue 23.8: two cores, another process busy on one of them
    assert worker_layout(0, cpu, cores=2, load=1.0) == (2, 1)
    assert worker_layout(0, cpu, cores=16, load=8.2) == (4, 2)  # 8 free cores, not 16
    assert worker_layout(0, cpu, cores=16, load=40.0) == (4, 1)
    assert worker_layout(1, cpu, cores=2, load=1.0) == (1, 1)  # one process: the free core
    assert worker_layout(1, cpu, cores=2, load=0.3) == (1, 0)  # idle: torch's own setting
    monkeypatch.setattr(os, "getloadavg", lambda: (8.5, 0.0, 0.0))
    monkeypatch.setattr(layout.time, "process_time", lambda: 30.0)  # busy half the minute
    assert layout.machine_load() == 8.0  # the load less this process's own share
    assert worker_layout(0, cpu, cores=16) == (4, 2)


def test_one_worker_per_visible_gpu(monkeypatch: pytest.MonkeyPatch):
    cuda = torch.device("cuda")
    assert worker_layout(0, cuda, cores=16, load=0, gpus=2) == (2, 8)
    assert worker_layout(0, cuda, cores=16, load=0, gpus=4) == (4, 4)
    assert worker_layout(8, cuda, cores=16, load=0, gpus=2) == (2, 8)  # at most one per GPU
    assert worker_layout(1, cuda, cores=16, load=0, gpus=4) == (1, 0)  # --workers 1: here
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert layout.visible_gpus() == ("0", "1")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3, 5")  # an existing list is honoured
    assert layout.visible_gpus() == ("3", "5")
    assert layout.gpu_assignment(("3", "5"), 2) == ("3", "5")
    assert layout.gpu_assignment(("3", "5"), 3) == ("3", "5", "3")
    monkeypatch.setattr(executors, "resolve_device", lambda _: cuda)
    pooled = choose_executor({"executor": "local", "device": "cuda", "workers": 0})
    assert isinstance(pooled, PoolExecutor)
    assert (pooled.workers, pooled.gpus) == (2, ("3", "5"))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert isinstance(choose_executor({"executor": "local", "device": "cuda"}), LocalExecutor)


def test_the_executor_is_always_a_real_one():
    run = {"executor": "local", "device": "cpu"}
    assert isinstance(choose_executor({**run, "workers": 1}), LocalExecutor)
    pooled = choose_executor({**run, "workers": 3})
    assert isinstance(pooled, PoolExecutor) and pooled.workers == 3


def test_workers_are_for_the_local_executor_only():
    with pytest.raises(ConfigError, match="--workers 2 is for the local executor"):
        resolve("smoke", flags={"workers": 2, "executor": "ray"})
    assert resolve("smoke")["run"]["workers"] == 1  # smoke cells are too small to spread
    with pytest.raises(ConfigError, match="run.threads 2 is for the local executor"):
        resolve("smoke", assignments=["run.threads=2"], flags={"executor": "ray"})
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


def test_cold_cells_start_with_the_priors_that_take_longest():
    plan = [CellKey("r", attack, target, "similar", 0)
            for attack in ("gmi", "fgmia", "fgmia-no-transf", "uami", "diffmi")
            for target in ("arcface-18", "ir152")]
    order = [(k.attack, k.target) for k in submission_order(plan, {})]
    # target-dependent diffusion priors, trained per cell, first (plan order among them) …
    assert order[:6] == [(a, t) for a in ("fgmia", "uami", "diffmi")
                         for t in ("arcface-18", "ir152")]
    # … then GMI's GAN, trained by its first cell; the cells that reuse a prior come last
    assert order[6] == ("gmi", "arcface-18")
    assert set(order[7:]) == {("gmi", "ir152"), ("fgmia-no-transf", "arcface-18"),
                              ("fgmia-no-transf", "ir152")}
    timed = submission_order(plan, {("gmi", "ir152"): 5.0, ("uami", "ir152"): 1.0})
    assert [(k.attack, k.target) for k in timed[-2:]] == [("gmi", "ir152"), ("uami", "ir152")]


@pytest.mark.slow
def test_each_worker_sees_the_gpu_it_was_given(tmp_path: Path, smoke_cache: str,
                                                monkeypatch: pytest.MonkeyPatch):
    plugin = tmp_path / "greys.py"
    plugin.write_text(PLUGIN)
    load_plugin_file(str(plugin))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    tree = resolve("smoke", flags={"attacks": "env-grey", "targets": "arcface,cosface",
                                   "cache_dir": smoke_cache, "results_dir": str(tmp_path)})
    keys = tuple(CellKey("r", "env-grey", t, "similar", 0) for t in ("arcface-18", "cosface-18"))
    started: list[CellKey] = []
    pool = PoolExecutor(2, 1, plugins=[plugin], gpus=("7", "9"))
    outcomes = dict(pool.run(Batch(tree, keys, on_start=started.append, show_progress=False)))
    assert started == list(keys) and set(outcomes) == set(keys)
    levels = {round(outcome.images.mean().item(), 2) for outcome in outcomes.values()}
    assert levels and levels <= {0.7, 0.9}  # never the driver's (unset) environment


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
