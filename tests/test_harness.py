"""The benchmark loop end to end at smoke size: cells, failures, resume after SIGKILL."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from mibench.reports.render import protocol_rows
from mibench.reports.runs import load_run
from mibench.store import Store

PLUGIN = '''
import torch
from mibench.attack import Attack, AttackSpec
from mibench.registry import ATTACKS


@ATTACKS.register("grey")
class Grey(Attack):
    spec = AttackSpec(name="grey", title="Grey", paper="Test", year=2026, access="labels",
                      prior="none")

    def invert(self, target, labels, ctx):
        return torch.full((len(labels), 3, 32, 32), 0.5)


@ATTACKS.register("boom")
class Boom(Attack):
    spec = AttackSpec(name="boom", title="Boom", paper="Test", year=2026, access="labels",
                      prior="none")

    def invert(self, target, labels, ctx):
        return target.probs(torch.rand(len(labels), 3, 32, 32))


@ATTACKS.register("wrongshape")
class WrongShape(Attack):
    spec = AttackSpec(name="wrongshape", title="Wrong", paper="Test", year=2026,
                      access="labels", prior="none")

    def invert(self, target, labels, ctx):
        return torch.rand(1, 3, 32, 32)
'''


def mibench(*args: str, cwd: Path, cache: str) -> list[str]:
    return [sys.executable, "-m", "mibench", *args, "--cache-dir", cache,
            "--results-dir", str(cwd / "runs"), "--quiet"]


def env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


SMOKE = ("--preset", "smoke", "--identities", "2", "--samples", "2", "--seed", "3")


def metric_table(results: Path, run_id: str) -> dict[tuple[str, str, str, str], float | None]:
    return {(m["attack"], m["target"], m["subset"], m["name"]): m["value"]
            for m in Store(results).metrics(run_id)}


def test_failing_cells_are_recorded_and_the_run_goes_on(tmp_path, smoke_cache):
    plugin = tmp_path / "plugin.py"
    plugin.write_text(PLUGIN)
    cmd = [sys.executable, "-m", "mibench", "--plugin", str(plugin), "run", *SMOKE,
           "--attacks", "grey,boom,wrongshape", "--targets", "arcface", "--cache-dir",
           smoke_cache, "--results-dir", str(tmp_path / "runs"), "--quiet"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env(), timeout=900)
    assert done.returncode == 1, done.stderr
    store = Store(tmp_path / "runs")
    (run_id,) = store.run_ids()
    cells = {c["attack"]: c for c in store.cells(run_id)}
    assert cells["grey"]["status"] == "done"
    assert cells["boom"]["status"] == "failed"
    assert "AccessError: probabilities is not available with 'labels' access" in \
        cells["boom"]["error"]
    assert cells["wrongshape"]["status"] == "failed"
    assert "returned (1, 3, 32, 32) images; it must return 4×3×H×W" in \
        cells["wrongshape"]["error"]
    assert (tmp_path / "runs" / run_id / "boom" / "arcface-18" / "error.log").is_file()
    grey = {(m["subset"], m["name"]): m for m in store.metrics(run_id) if m["attack"] == "grey"}
    assert grey[("all", "eval_acc1")]["value"] is not None
    assert grey[("all", "attr_err")]["value"] is not None  # the synthetic world's ground truth
    assert {subset for subset, _ in grey} == {"all", "selected"}
    images = tmp_path / "runs" / run_id / "grey" / "arcface-18" / "images"
    assert sorted(p.name for p in (images / "1").iterdir()) == ["0.png", "1.png"]
    assert cells["grey"]["queries"]["per_identity"]["forward"] == 2  # selection: 2 labels each
    assert "grey" in done.stdout and "failed" in done.stdout


def _wait_for_second_cell(db: Path, proc: subprocess.Popen[str], timeout: float) -> None:
    """Poll the store until one cell is done and another is running."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, "the run ended before it could be interrupted"
        if db.exists():
            try:
                with sqlite3.connect(db) as conn:
                    states = [r[0] for r in conn.execute("SELECT status FROM cells")]
            except sqlite3.OperationalError:
                states = []
            if states.count("done") == 1 and "running" in states:
                return
        time.sleep(0.02)
    raise AssertionError("the second cell never started")


def test_resume_after_sigkill_completes_every_cell_once_with_the_same_numbers(tmp_path,
                                                                              smoke_cache):
    grid = ("--attacks", "gmi", "--targets", "arcface,ir152")
    straight = tmp_path / "straight"
    subprocess.run(mibench("run", *SMOKE, *grid, cwd=straight, cache=smoke_cache), check=True,
                   capture_output=True, text=True, env=env(), timeout=900)

    broken = tmp_path / "broken"
    proc = subprocess.Popen(mibench("run", *SMOKE, *grid, cwd=broken, cache=smoke_cache),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env())
    try:
        _wait_for_second_cell(broken / "runs" / "mibench.db", proc, timeout=600)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    store = Store(broken / "runs")
    (run_id,) = store.run_ids()
    assert sorted(c["status"] for c in store.cells(run_id)) == ["done", "running"]

    resumed = subprocess.run(mibench("run", "--resume", cwd=broken, cache=smoke_cache),
                             capture_output=True, text=True, env=env(), timeout=900)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming run {run_id}" in resumed.stdout
    assert store.run_ids() == [run_id]
    cells = store.cells(run_id)
    assert sorted((c["attack"], c["target"], c["status"]) for c in cells) == [
        ("gmi", "arcface-18", "done"), ("gmi", "ir152", "done")]
    (straight_id,) = Store(straight / "runs").run_ids()
    expected = metric_table(straight / "runs", straight_id)
    assert metric_table(broken / "runs", run_id) == expected
    assert len(expected) == 2 * 2 * len({k[3] for k in expected})
    for target in ("arcface-18", "ir152"):
        pngs = list((broken / "runs" / run_id / "gmi" / target / "images").rglob("*.png"))
        assert len(pngs) == 4
    assert not list((broken / "runs" / run_id / "gmi").glob("*/.images-*"))


def test_resume_with_nothing_to_resume_is_a_clear_error(tmp_path, smoke_cache):
    done = subprocess.run(mibench("run", "--resume", cwd=tmp_path, cache=smoke_cache),
                          capture_output=True, text=True, env=env(), timeout=120)
    assert done.returncode == 2
    assert "nothing to resume" in done.stderr


def test_asking_for_more_identities_than_the_world_has_warns_once(tmp_path, smoke_cache):
    plugin = tmp_path / "plugin.py"
    plugin.write_text(PLUGIN)
    cmd = [sys.executable, "-m", "mibench", "--plugin", str(plugin), "run", "--preset", "smoke",
           "--identities", "100000", "--samples", "1", "--attacks", "grey", "--targets",
           "arcface,cosface", "--cache-dir", smoke_cache, "--results-dir",
           str(tmp_path / "runs"), "--quiet"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env(), timeout=900)
    assert done.returncode == 0, done.stderr
    store = Store(tmp_path / "runs")
    (run_id,) = store.run_ids()
    (warning,) = store.run(run_id)["warnings"]
    assert warning.startswith("--identities 100000, but the synth world has ")
    private = int(warning.split(" has ")[1].split()[0])
    assert warning.endswith(f"all {private} were attacked")
    assert done.stderr.count("--identities 100000") == 1  # printed once, not per cell
    images = tmp_path / "runs" / run_id / "grey" / "cosface-18" / "images"
    assert len(list(images.iterdir())) - 1 == private  # identity folders + samples.pt
    assert ("warnings", warning) in protocol_rows(load_run(store, run_id))
