"""The resource planner (mibench.planning): counting on the meta device, and the plan."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import torch
from torch import nn

from mibench.cli import main as cli_main
from mibench.planning.command import OVER_BUDGET_STATUS, main
from mibench.planning.count import CALIBRATION, Pass, measure_pass, on_meta, step_cost
from mibench.planning.gpus import get_gpu
from mibench.planning.workloads import REFERENCE_BATCH, Setting, target_network, target_pass
from mibench.errors import UnknownNameError


def test_flops_of_linear_and_conv_are_analytic() -> None:
    linear = on_meta(lambda: nn.Linear(300, 200))
    cost = measure_pass(lambda: linear(torch.randn(8, 300)).sum())
    assert cost.forward_flops == 2 * 8 * 300 * 200
    conv = on_meta(lambda: nn.Conv2d(16, 32, 3, padding=1))
    cost = measure_pass(lambda: conv(torch.randn(2, 16, 10, 10)).sum())
    assert cost.forward_flops == 2 * 2 * 32 * 10 * 10 * 16 * 9
    # backward: the weight gradient, and no input gradient for a leaf input without grad
    assert cost.backward_flops == cost.forward_flops


def test_saved_bytes_of_a_known_net() -> None:
    """k bias-free linear layers keep each layer's input (k · b · d floats) for backward."""
    k, b, d = 3, 8, 100
    net = on_meta(lambda: nn.Sequential(*[nn.Linear(d, d, bias=False) for _ in range(k)]))
    cost = measure_pass(lambda: net(torch.randn(b, d)).sum())
    assert cost.saved_bytes == k * b * d * 4 + 4          # + the scalar loss
    assert cost.peak_bytes >= cost.saved_bytes


def test_state_counts_parameters_gradients_and_adam_slots() -> None:
    net = on_meta(lambda: nn.Linear(10, 10))
    frozen = on_meta(lambda: nn.Linear(10, 10))
    cost = step_cost([Pass(lambda: net(frozen(torch.randn(2, 10))).sum())],
                     trained=[(net, 2)], frozen=[frozen])
    assert cost.state_bytes == 110 * 4 * 4 + 110 * 4
    assert cost.peak_bytes == cost.state_bytes + CALIBRATION * cost.activation_bytes


def test_target_costs_are_linear_in_the_batch() -> None:
    setting = Setting("smoke", "arcface-18", 2, 2, 32, 8, 32)
    net = target_network("arcface-18", "smoke", 8)
    side, batch = net.resolution, 3 * REFERENCE_BATCH
    scaled = target_pass(setting, batch, side, True)

    def run() -> torch.Tensor:
        logits, features = net(torch.rand(batch, 3, side, side, requires_grad=True))
        return logits.sum() + features.sum()

    direct = step_cost([Pass(run)], frozen=[net])
    assert scaled.flops == pytest.approx(direct.flops)
    assert scaled.activation_bytes == pytest.approx(direct.activation_bytes, rel=0.01)


def test_unknown_gpu_names_the_choices() -> None:
    assert get_gpu("rtx4090").memory_gib == 24
    with pytest.raises(UnknownNameError, match="unknown GPU class 'v100'.*rtx4090"):
        get_gpu("v100")


def _no_world(*args, **kwargs):
    raise AssertionError("the planner must not build the world")


def test_table1_plan_never_builds_the_world(monkeypatch, capsys) -> None:
    from mibench.datasets.synth import world
    monkeypatch.setattr(world, "build_world", _no_world)
    monkeypatch.setattr(world.SynthDataset, "build", staticmethod(_no_world))
    started = time.process_time()
    assert cli_main(["plan", "--experiment", "table1", "--preset", "smoke"]) == 0  # mibench plan
    assert time.process_time() - started < 60      # CPU seconds on a shared 2-core machine
    out = capsys.readouterr().out
    for row in ("WGAN-GP prior (gmi)", "fgmia × arcface-18", "ir152", "densenet-121",
                "Target recipes", "GPU-hours"):
        assert row in out
    assert "no estimate" not in out


@pytest.mark.slow
def test_every_table1_paper_row_fits_a_24_gib_card(monkeypatch, capsys) -> None:
    """Issue 17: at paper scale every prior, target and cell of Table I fits a 24 GB card
    (StyleGAN2 at 128 px with its residual critic and accumulation; the diffusion attacks in
    micro-batches); the plan exits 0 under ``--budget-gib 24``."""
    from mibench.datasets.synth import world
    monkeypatch.setattr(world, "build_world", _no_world)
    started = time.process_time()
    status = main(["--experiment", "table1", "--preset", "paper", "--budget-gib", "24"])
    assert time.process_time() - started < 120     # ~20-40 CPU s on the shared 2-core machine
    out = capsys.readouterr().out
    assert status == 0 and "OVER" not in out and "0 row(s) over 24 GiB" in out
    rows = {line.split("  ")[0]: line for line in out.splitlines()}
    for name in ("StyleGAN prior (ppa)", "ppa × ir152", "ifgmi × arcface-18",
                 "FGMIA prior (fgmia @ ir152)", "gmi × ir152", "fgmia × arcface-18",
                 "UAMI prior (uami @ ir152)", "Diff-MI prior (diffmi @ ir152)",
                 "Diff-MI fine-tune (diffmi @ ir152)", "diffmi × ir152"):
        assert "yes" in rows[name].split()


def test_over_budget_cell_is_flagged_and_exits_non_zero(capsys) -> None:
    args = ["--attacks", "gmi", "--targets", "arcface", "--preset", "smoke"]
    assert main(args) == 0                                   # no explicit budget: flag only
    assert main([*args, "--budget-gib", "0.001"]) == OVER_BUDGET_STATUS
    assert "OVER" in capsys.readouterr().out


CALIBRATION_SCRIPT = """
import gc, resource, torch
torch.set_num_threads(1)
from mibench.attacks.priors.dcgan import Critic
from mibench.planning.count import Pass, on_meta, step_cost
critic = Critic(64, 1.0)
optimiser = torch.optim.Adam(critic.parameters())
x = torch.rand(256, 3, 64, 64)
gc.collect()
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
critic(x).mean().backward()
optimiser.step()
grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
meta = on_meta(lambda: Critic(64, 1.0))
cost = step_cost([Pass(lambda: meta(torch.rand(256, 3, 64, 64)).mean())], trained=[(meta, 2)])
params = sum(p.numel() * 4 for p in meta.parameters())
# grown = gradients + Adam slots + activations (x and the parameters existed before)
print((grown - (cost.state_bytes - params) + x.numel() * 4) / cost.activation_bytes)
"""


@pytest.mark.slow
def test_calibration_against_cpu_peak() -> None:
    ratio = float(subprocess.run([sys.executable, "-c", CALIBRATION_SCRIPT], check=True,
                                 capture_output=True, text=True).stdout)
    assert ratio == pytest.approx(CALIBRATION, rel=0.2)
