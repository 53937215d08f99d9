"""``--executor ray``: the same store as the local executor, retried cells, clear errors.

Each test starts a private 2-CPU Ray instance through ``mibench run --executor ray`` (the
driver's ``ray.init``), so nothing outlives the test. The tests are skipped only where the
``ray`` extra is not installed (``make install`` installs it).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from mibench.cli import main
from mibench.store import Store

GRID = ("--preset", "smoke", "--attacks", "gmi", "--targets", "arcface", "--identities", "1",
        "--samples", "2", "--seed", "3", "--seeds", "2")

# `sleepy` writes its worker's pid, then sleeps long enough to be killed; `crashy` kills its
# own worker every time
PLUGIN = '''
import os
import time
from pathlib import Path
from types import SimpleNamespace

import torch
from mibench.attack import Attack, AttackSpec
from mibench.registry import ATTACKS

PIDS = Path(__file__).with_name("pids")


def note(tag):
    with open(PIDS, "a") as fh:
        fh.write(f"{tag} {os.getpid()}\\n")


@ATTACKS.register("sleepy")
class Sleepy(Attack):
    spec = AttackSpec(name="sleepy", title="Sleepy", paper="Test", year=2026, access="labels",
                      prior="none")

    def invert(self, target, labels, ctx):
        note("sleepy")
        time.sleep(3)
        return torch.full((len(labels), 3, 32, 32), 0.5)


@ATTACKS.register("crashy")
class Crashy(Attack):
    spec = AttackSpec(name="crashy", title="Crashy", paper="Test", year=2026, access="labels",
                      prior="none")

    def invert(self, target, labels, ctx):
        note("crashy")
        os._exit(1)
'''


def _env() -> dict[str, str]:
    """One torch thread, as in test_harness; RAY_ADDRESS names a cluster that does not exist:
    without --address the driver must start its own instance, not try to join that one."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
            "RAY_AUTH_MODE": "disabled", "RAY_ADDRESS": "127.0.0.1:9"}


def _mibench(*args: str, results: Path, cache: str) -> list[str]:
    return [sys.executable, "-m", "mibench", *args, "--cache-dir", cache, "--results-dir",
            str(results), "--quiet"]


def _store_contents(results: Path) -> tuple[list[tuple], dict[tuple, float | None], dict]:
    """(cells with status and queries, metric values, stored samples) of the only run."""
    store = Store(results)
    (run_id,) = store.run_ids()
    cells = [(c["attack"], c["target"], c["aux"], c["seed"], c["status"],
              c["queries"]["prepare"], c["queries"]["per_identity"]) for c in store.cells(run_id)]
    metrics = {(m["attack"], m["target"], m["aux"], m["seed"], m["subset"], m["name"]):
               m["value"] for m in store.metrics(run_id)}
    samples = {str(p.relative_to(results / run_id)): torch.load(p, weights_only=True)["images"]
               for p in sorted((results / run_id).rglob("samples.pt"))}
    return cells, metrics, samples


def test_ray_grid_stores_what_the_local_executor_stores(tmp_path):
    pytest.importorskip("ray")
    stores = {}
    for executor in ("local", "ray"):  # each from an empty cache: workers train everything
        results = tmp_path / executor
        done = subprocess.run(_mibench("run", *GRID, "--executor", executor, results=results,
                                       cache=str(tmp_path / f"cache-{executor}")),
                              capture_output=True, text=True, env=_env(), timeout=300)
        assert done.returncode == 0, done.stderr
        stores[executor] = _store_contents(results)
    cells, metrics, samples = stores["ray"]
    assert [c[:5] for c in cells] == [("gmi", "arcface-18", "similar", 3, "done"),
                                      ("gmi", "arcface-18", "similar", 4, "done")]
    assert cells == stores["local"][0]  # queries too: the prior's are booked on seed 3's cell
    assert metrics == stores["local"][1] and len(metrics) == 2 * 2 * 22  # 21 metrics + natural_acc
    assert samples.keys() == stores["local"][2].keys() and len(samples) == 2
    for name, images in samples.items():
        assert torch.equal(images, stores["local"][2][name])
    store = Store(tmp_path / "ray")
    assert store.run(store.run_ids()[0])["device"] == "auto on a Ray cluster"


def _pids(path: Path, tag: str) -> list[int]:
    if not path.exists():
        return []
    return [int(line.split()[1]) for line in path.read_text().splitlines()
            if line.startswith(tag + " ")]


def test_a_killed_worker_has_its_cell_retried_and_a_crashing_one_fails_bounded(tmp_path,
                                                                            smoke_cache):
    pytest.importorskip("ray")
    plugin = tmp_path / "plugin.py"
    plugin.write_text(PLUGIN)
    pids = tmp_path / "pids"
    cmd = _mibench("--plugin", str(plugin), "run", "--preset", "smoke", "--attacks",
                   "sleepy,crashy", "--targets", "arcface", "--identities", "1", "--samples",
                   "2", "--executor", "ray", results=tmp_path / "runs", cache=smoke_cache)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env())
    try:
        deadline = time.time() + 120
        while not _pids(pids, "sleepy"):
            assert proc.poll() is None and time.time() < deadline, "the cell never started"
            time.sleep(0.05)
        (worker,) = _pids(pids, "sleepy")
        assert worker not in (os.getpid(), proc.pid)
        os.kill(worker, signal.SIGKILL)  # mid-cell: it sleeps for 3 s inside invert
        out, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, err  # crashy failed; every cell has an outcome
    store = Store(tmp_path / "runs")
    (run_id,) = store.run_ids()
    cells = {c["attack"]: c for c in store.cells(run_id)}
    assert cells["sleepy"]["status"] == "done"
    assert len(set(_pids(pids, "sleepy"))) == 2  # the killed try and the retry
    images = tmp_path / "runs" / run_id / "sleepy" / "arcface-18" / "images" / "0"
    assert sorted(p.name for p in images.iterdir()) == ["0.png", "1.png"]
    assert cells["crashy"]["status"] == "failed"
    assert "the worker died 3 time(s)" in cells["crashy"]["error"]
    assert len(_pids(pids, "crashy")) == 3  # one try and two retries, then it is given up
    assert "sleepy" in out and "failed" in out


# `scorer` prepares without a cache: every prepare sleeps 1 s and scores 5 aux images
PREPARING = '''
import time

import torch
from mibench.attack import Attack, AttackSpec
from mibench.registry import ATTACKS


@ATTACKS.register("scorer")
class Scorer(Attack):
    spec = AttackSpec(name="scorer", title="Scorer", paper="Test", year=2026, access="scores",
                      prior="none")

    def prepare(self, ctx):
        time.sleep(1.0)
        self.probs = ctx.target.probs(torch.rand(5, 3, 32, 32))

    def invert(self, target, labels, ctx):
        return torch.full((len(labels), 3, 32, 32), 0.5)
'''


def test_an_uncached_prepare_is_booked_once_per_cell(tmp_path, smoke_cache):
    pytest.importorskip("ray")
    plugin = tmp_path / "plugin.py"
    plugin.write_text(PREPARING)
    done = subprocess.run(_mibench("--plugin", str(plugin), "run", "--preset", "smoke",
                                   "--attacks", "scorer", "--targets", "arcface", "--identities",
                                   "1", "--samples", "2", "--seeds", "2", "--executor", "ray",
                                   results=tmp_path / "runs", cache=smoke_cache),
                          capture_output=True, text=True, env=_env(), timeout=300)
    assert done.returncode == 0, done.stderr
    store = Store(tmp_path / "runs")
    cells = store.cells(store.run_ids()[0])
    assert [c["status"] for c in cells] == ["done", "done"]
    for cell in cells:  # the prior job's prepare and the cell's are one prepare, booked once
        assert cell["queries"]["prepare"] == {"forward": 5, "gradient": 0}
        assert 1.0 <= cell["timings"]["prepare_s"] < 2.0


def test_ray_missing_is_a_one_line_error_before_anything_runs(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    code = main(["run", *GRID, "--executor", "ray", "--results-dir", str(tmp_path / "runs"),
                 "--cache-dir", str(tmp_path / "cache"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "--executor ray needs Ray: pip install 'mibench[ray]'" in err
    assert not (tmp_path / "runs").exists()


def test_an_address_without_the_ray_executor_is_refused(capsys):
    code = main(["run", "--dry-run", "--address", "auto"])
    assert code == 2 and "--address auto needs --executor ray" in capsys.readouterr().err


def test_resume_after_the_driver_is_killed_redoes_the_unfinished_cells(tmp_path, smoke_cache):
    pytest.importorskip("ray")
    plugin = tmp_path / "plugin.py"
    plugin.write_text(PLUGIN)
    pids = tmp_path / "pids"
    grid = ("--preset", "smoke", "--attacks", "sleepy", "--targets", "arcface,ir152",
            "--identities", "1", "--samples", "2")
    # its own session, so that what the private Ray instance leaves behind can be ended
    proc = subprocess.Popen(_mibench("--plugin", str(plugin), "run", *grid, "--executor", "ray",
                                     results=tmp_path / "runs", cache=smoke_cache),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env(),
                            start_new_session=True)
    try:
        deadline = time.time() + 120
        while not _pids(pids, "sleepy"):
            assert proc.poll() is None and time.time() < deadline, "no cell ever started"
            time.sleep(0.05)
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # the driver crashes while its cells run
        proc.wait()
        time.sleep(1)
        try:  # Ray's agents outlive a SIGKILLed driver; they are in its process group
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    store = Store(tmp_path / "runs")
    (run_id,) = store.run_ids()
    assert "done" not in {c["status"] for c in store.cells(run_id)}

    resumed = subprocess.run(_mibench("--plugin", str(plugin), "run", "--resume", "--executor",
                                      "ray", results=tmp_path / "runs", cache=smoke_cache),
                             capture_output=True, text=True, env=_env(), timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming run {run_id}" in resumed.stdout and store.run_ids() == [run_id]
    assert sorted((c["target"], c["status"]) for c in store.cells(run_id)) == [
        ("arcface-18", "done"), ("ir152", "done")]
    assert not list((tmp_path / "runs" / run_id / "sleepy").glob("*/.images-*"))


def test_jobs_take_a_gpu_only_where_the_cluster_has_them():
    from mibench.errors import MibenchError
    from mibench.executors.ray import _gpus

    def cluster(gpus: int) -> SimpleNamespace:
        return SimpleNamespace(cluster_resources=lambda: {"CPU": 8.0, "GPU": float(gpus)})

    assert [_gpus(cluster(4), device) for device in ("auto", "cuda", "cpu")] == [1, 1, 0]
    assert [_gpus(cluster(0), device) for device in ("auto", "cpu")] == [0, 0]
    with pytest.raises(MibenchError, match="--device cuda, but the Ray cluster has no GPUs"):
        _gpus(cluster(0), "cuda")
