"""The README's plugin example, as a package and as a file, through `run` and `report`; its own
tests, written with `mibench.testing`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from mibench.store import Store

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "mibench-auxpick"
EXAMPLE_TEST = EXAMPLE / "tests" / "test_auxpick.py"


def mibench(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mibench", *args], capture_output=True,
                          text=True, env={**os.environ, "OMP_NUM_THREADS": "1", **env},
                          timeout=900)


def test_readme_shows_the_example_verbatim():
    readme = (ROOT / "README.md").read_text()
    for file in (EXAMPLE / "mibench_auxpick.py", EXAMPLE / "pyproject.toml", EXAMPLE_TEST):
        assert file.read_text().strip() in readme, f"README lacks {file.name}"
    assert "[`mibench.testing`](mibench/testing.py)" in readme


def test_example_tests_use_mibench_testing_and_pass(tmp_path):
    assert "from mibench.testing import" in EXAMPLE_TEST.read_text()
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "--basetemp", str(tmp_path / "pytest"), str(EXAMPLE_TEST)],
                          capture_output=True, text=True, timeout=300, cwd=EXAMPLE,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(EXAMPLE)})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout


def test_installed_package_runs_and_reports(tmp_path, smoke_cache):
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                    "--no-build-isolation", "--disable-pip-version-check", "--target", str(site),
                    str(EXAMPLE)], check=True, capture_output=True, timeout=300)
    env = {"PYTHONPATH": str(site)}
    runs = str(tmp_path / "runs")
    done = mibench("run", "--preset", "smoke", "--attacks", "auxpick", "--targets",
                   "arcface,ir152", "--identities", "2", "--samples", "2", "--cache-dir",
                   smoke_cache, "--results-dir", runs, "--quiet", env=env)
    assert done.returncode == 0, done.stderr
    store = Store(runs)
    (run_id,) = store.run_ids()
    cells = store.cells(run_id)
    assert [c["status"] for c in cells] == ["done", "done"]
    assert cells[0]["queries"]["prepare"]["forward"] == 32  # every smoke aux image (8 × 4)
    report = mibench("report", "--results-dir", runs, "--cache-dir", smoke_cache,
                     "--out", str(tmp_path / "report"), "--quiet", env=env)
    assert report.returncode == 0, report.stderr
    html = (tmp_path / "report" / "index.html").read_text()
    assert "auxpick" in html and "data:image/png;base64" in html


def test_plugin_file_form_runs(tmp_path, smoke_cache):
    done = mibench("--plugin", str(EXAMPLE / "mibench_auxpick.py"), "run", "--preset", "smoke",
                   "--attacks", "auxpick", "--targets", "arcface", "--identities", "2",
                   "--samples", "2", "--cache-dir", smoke_cache, "--results-dir",
                   str(tmp_path / "runs"), "--quiet", env={})
    assert done.returncode == 0, done.stderr
    assert "auxpick" in done.stdout and "done" in done.stdout
