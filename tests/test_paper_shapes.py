"""benchmarks/paper_shapes.py: capped subprocess per component, FAILED rows, the cheapest subset."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
HOG = '''
import torch
from mibench.attack import Attack, AttackSpec
from mibench.registry import ATTACKS


@ATTACKS.register("hog")
class Hog(Attack):
    spec = AttackSpec(name="hog", title="allocates 4 GiB in prepare", paper="test", year=2026,
                      access="whitebox", prior="none")

    def prepare(self, ctx):
        self.block = torch.empty(4 * 2 ** 30, dtype=torch.uint8)  # untouched: virtual only

    def invert(self, target, labels, ctx):
        return torch.zeros(len(labels), 3, 8, 8)
'''


@pytest.fixture(scope="module")
def shapes():
    spec = importlib.util.spec_from_file_location("paper_shapes", BENCHMARKS / "paper_shapes.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("shape_checks", None)


def test_allocation_over_the_cap_is_a_failed_row_with_a_one_line_reason(shapes, tmp_path):
    plugin = tmp_path / "hog.py"
    plugin.write_text(HOG)
    # 4 GiB of untouched address space is granted without a cap; 5 GiB of address space,
    # about 4 of which torch holds after import, refuses it
    args = shapes.parse_args(["--mem-gib", "5", "--plugin", str(plugin)])
    row = shapes.run_isolated("attack:hog", args)
    assert row["status"] == "FAILED"
    assert "you tried to allocate 4294967296 bytes" in row["error"]
    assert "\n" not in row["error"] and len(row["error"]) <= 160
    table = shapes.markdown([row])
    assert "| hog | FAILED (prepare): RuntimeError: DefaultCPUAllocator: can't" in table
    assert "self.block = torch.empty(4 * 2 ** 30" in row["traceback"]  # where, in the JSON


@pytest.mark.slow
def test_the_same_allocation_passes_under_the_default_cap(shapes, tmp_path):
    plugin = tmp_path / "hog.py"
    plugin.write_text(HOG)
    row = shapes.run_isolated("attack:hog", shapes.parse_args(["--plugin", str(plugin)]))
    assert row["status"] == "ok", row.get("error")
    assert row["output"] == "4×3×8×8" and row["planned"] is False


def test_timeout_is_a_failed_row(shapes):
    row = shapes.run_isolated("target:arcface-18", shapes.parse_args(["--timeout", "1"]))
    assert row == {"component": "target:arcface-18", "status": "FAILED",
                   "error": "timed out after 1 s"}


def test_a_subprocess_that_dies_is_reported_by_its_signal_and_last_words(shapes):
    assert shapes.exit_reason(-9, "loading\n\n") == "killed by SIGKILL: loading"
    assert shapes.exit_reason(3, "") == "exit code 3"
    assert shapes.one_line("RuntimeError: [enforce fail at alloc_cpu.cpp:127] err == 0. "
                           "DefaultCPUAllocator: can't\n allocate") == (
        "RuntimeError: DefaultCPUAllocator: can't allocate")
    assert len(shapes.one_line("x" * 500)) == 160


def test_every_attack_has_a_plan_and_every_zoo_model_a_row(shapes):
    from mibench.registry import ATTACKS
    from shape_checks import PLANS

    names = shapes.components()
    assert {f"attack:{a}" for a in ATTACKS.names()} <= set(names)
    assert set(ATTACKS.names()) <= set(PLANS)
    assert {"target:ir152", "target:dlib-resnet", "target:densenet-121"} <= set(names)
    for attack in ATTACKS.names():  # plans cut steps only: every override is a config field
        ATTACKS.get(attack).Config.resolve("paper", PLANS[attack].overrides)


@pytest.mark.slow
def test_cheapest_subset_runs_at_paper_shapes_with_numbers(shapes):
    args = shapes.parse_args([])
    attack = shapes.run_isolated("attack:gmi", args)
    model = shapes.run_isolated("target:densenet-121", args)
    assert attack["status"] == "ok", attack.get("error")
    assert model["status"] == "ok", model.get("error")
    assert attack["output"] == "4×3×64×64"  # GMI's paper prior is 64 px
    assert attack["networks_m"]["prior-gmi"] > 5
    assert sorted(attack["prepare_loops"]) == ["WGAN-GP prior"]
    assert len(attack["invert_loops"]["GMI"]) == 2
    for key in ("prepare_s_per_step", "invert_s_per_step", "peak_gib"):
        assert attack[key] > 0
    assert model["networks_m"]["densenet-121"] == pytest.approx(8.0, abs=0.1)
    assert model["train_step_s"] > 0 and model["forward_s"] > 0
    assert model["output"] == "logits (4, 1000), features (4, 1024)"
