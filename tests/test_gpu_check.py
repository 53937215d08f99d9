"""benchmarks/gpu_check.py at tiny size on the CPU, and its meters (benchmarks/step_meter.py)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Iterator

import pytest
import torch
from torch import nn

from mibench.testing import toy_context

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture(scope="module")
def gpu_check() -> Iterator[ModuleType]:
    spec = importlib.util.spec_from_file_location("gpu_check", BENCHMARKS / "gpu_check.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    for name in ("step_meter", "shape_checks"):
        sys.modules.pop(name, None)


def metered_context(gpu_check: ModuleType, tmp_path: Path) -> Any:
    toy = toy_context(cache=tmp_path)
    return gpu_check.MeteredContext(**{name: getattr(toy, name) for name in (
        "aux", "cache", "device", "seed", "ledger", "target", "data_fingerprint",
        "aux_fingerprint", "show_progress")})


def test_tiny_cpu_run_writes_json_and_markdown(gpu_check: ModuleType, tmp_path: Path) -> None:
    code = gpu_check.main(["--out", str(tmp_path), "--device", "cpu", "--tiny",
                           "--attacks", "gmi,fmi"])
    assert code == 0
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    env = report["environment"]
    assert env["device"] == "cpu" and env["precision"] == "fp32" and env["torch"]
    assert [row["attack"] for row in report["attacks"]] == ["gmi", "fmi"]
    for row in report["attacks"]:
        assert row["status"] == "ok" and row["preset"] == "smoke"
        assert row["prepare_s"] > 0 and row["invert_images_per_s"] > 0
        assert 0 < row["prepare_tflops"] < 10 and 0 < row["invert_tflops"] < 10
        assert row["peak_gib"] > 0 and row["output"][0] == 4
        assert row["autocast"] is False and set(row["matmul_dtypes"]) == {"float32 (plain)"}
        assert any(loop["gflop_per_step"] > 0 for loop in row["loops"].values())
    markdown = (tmp_path / "gpu_check.md").read_text()
    assert "| attack | status | prepare s |" in markdown and "| gmi | ok |" in markdown


def test_dry_run_reports_the_environment_only(gpu_check: ModuleType, tmp_path: Path) -> None:
    assert gpu_check.main(["--out", str(tmp_path), "--dry", "--device", "cpu"]) == 0
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["attacks"] == [] and report["tests"] is None
    assert report["environment"]["precision_policy"] == "auto"


def test_a_failing_attack_is_a_failed_row_and_exit_1(gpu_check: ModuleType, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any) -> None:
        raise RuntimeError("CUDA out of memory\nTried to allocate 80 GiB")

    monkeypatch.setattr(gpu_check, "attack_setting", broken)
    assert gpu_check.main(["--out", str(tmp_path), "--device", "cpu", "--tiny",
                           "--attacks", "gmi"]) == 1
    row = json.loads((tmp_path / "gpu_check.json").read_text())["attacks"][0]
    assert row["status"] == "FAILED" and row["phase"] == "setup"
    assert row["error"] == "RuntimeError: CUDA out of memory"
    assert "FAILED (setup): RuntimeError: CUDA out of memory" in (
        tmp_path / "gpu_check.md").read_text()


def test_one_step_is_counted_and_the_others_timed(gpu_check: ModuleType,
                                                  tmp_path: Path) -> None:
    ctx = metered_context(gpu_check, tmp_path)
    layer = nn.Linear(64, 32, bias=False)
    for _ in ctx.progress(range(3), desc="train"):
        x = torch.randn(8, 64, requires_grad=True)
        out = layer(x).square().sum()
        # a gradient penalty's autograd.grad: FlopCounterMode's module tracker rejects it
        (grad,) = torch.autograd.grad(out, x, create_graph=True)
        grad.square().sum().backward()
    meter = ctx.take_loops()["train"]
    forward = 2 * 8 * 64 * 32
    assert meter.step_flops is not None and meter.step_flops >= 3 * forward
    assert len(meter.seconds) == 2
    assert gpu_check.achieved_tflops({"train": meter}) > 0


def test_a_loop_left_mid_step_leaves_no_counter_behind(gpu_check: ModuleType,
                                                      tmp_path: Path) -> None:
    ctx = metered_context(gpu_check, tmp_path)
    loop = iter(ctx.progress(range(3), desc="loop"))
    next(loop)                                   # the counted step, left by an error
    assert torch._C._len_torch_dispatch_stack() == 1
    ctx.close_loops()
    assert torch._C._len_torch_dispatch_stack() == 0
    assert ctx.take_loops()["loop"].seconds == []


def test_autocast_shows_in_the_matmul_dtypes(gpu_check: ModuleType) -> None:
    layer, x = nn.Linear(8, 4), torch.randn(2, 8)
    with gpu_check.matmul_dtypes(torch.device("cpu")) as seen:
        layer(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            layer(x)
    assert seen == {"float32 (plain)": 1, "bfloat16 (autocast)": 1}
