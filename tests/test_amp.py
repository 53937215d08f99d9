"""Mixed precision in the loops (issue 17): target training, metric passes, GAN priors, latent
descent and the planner follow the run's precision; no per-step host syncs in training; fp32
(the CPU default) leaves cache keys as they were."""

from __future__ import annotations

import argparse

import pytest
import torch
from torch import nn

from mibench import precision
from mibench.attacks.latent import descend
from mibench.attacks.priors.dcgan import Critic, gradient_penalty
from mibench.cache import Cache
from mibench.metrics.batching import logits_and_features
from mibench.metrics.fid import frechet_distance, inception_features
from mibench.errors import UnknownNameError
from mibench.planning.command import add_plan_arguments, throughput_policy
from mibench.planning.gpus import get_gpu
from mibench.runconfig import resolve
from mibench.targets import TargetConfig, TargetError, build_target, train_target, zoo
from mibench.targets import train as train_module
from mibench.targets.entries import get_entry
from mibench.targets.train import MarginObjective, build_objective, fit
from mibench.testing import toy_split
from mibench.world import World

CPU = torch.device("cpu")


def smoke(**overrides: object) -> TargetConfig:
    return TargetConfig.resolve("smoke", {"depth": 18, "arch": "iresnet", "kind": "closed",
                                          "loss": "softmax", "epochs": 2, "batch_size": 8,
                                          **overrides})


def conv_dtypes(model: nn.Module) -> list[torch.dtype]:
    """Output dtypes of every convolution of ``model`` (a forward hook on each)."""
    seen: list[torch.dtype] = []
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            module.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    return seen


@pytest.mark.parametrize("policy,dtype", [("bf16", torch.bfloat16), ("fp32", torch.float32),
                                          ("auto", torch.float32)])
def test_target_training_autocasts_under_the_policy(policy: str, dtype: torch.dtype,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    precision.configure(policy, CPU)
    hooks: list[list[torch.dtype]] = []

    def hooked(cfg: TargetConfig, classes: int) -> nn.Module:
        model = build_target(cfg, classes)
        hooks.append(conv_dtypes(model))
        return model

    monkeypatch.setattr(train_module, "build_target", hooked)
    train = toy_split(4, 8)
    _, metrics = train_target(smoke(), train=train, val=train, progress=False)
    assert metrics.val_accuracy is not None
    assert hooks and set(hooks[0]) == {dtype}


def test_training_reads_the_loss_once_per_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    """No ``.item()`` per step: the loss is summed on the device and read once per epoch (the
    old loop read it, and checked it for finiteness, every step)."""
    cfg = smoke(epochs=3, batch_size=4)
    train = toy_split(4, 8)
    target = build_target(cfg, train.num_classes)
    calls = []
    real_item = torch.Tensor.item

    def counting(self: torch.Tensor) -> object:
        calls.append(1)
        return real_item(self)

    monkeypatch.setattr(torch.Tensor, "item", counting)
    steps, loss = fit(target, build_objective(cfg, train.num_classes), train, cfg,
                      progress=False)
    assert steps == 3 * 8 and loss == loss  # finite: not NaN
    assert len(calls) <= cfg.epochs


def test_divergence_is_reported_at_the_end_of_its_epoch() -> None:
    cfg = smoke(epochs=1, lr=1e30)
    train = toy_split(4, 8)
    with pytest.raises(TargetError, match="training diverged in epoch 1"):
        train_target(cfg, train=train, progress=False)


def test_zoo_keys_are_tagged_under_mixed_precision_only(tmp_path) -> None:
    world = World(name="toy", fingerprint="toy-0001",
                  splits={"private-train": toy_split(4, 8, name="private-train")})
    cache, entry = Cache(tmp_path), get_entry("arcface-18")
    fp32 = zoo.entry_key(entry, world, cache, "smoke")
    untagged = cache.key(zoo.COMPONENT, {"config": entry.resolve("smoke").identity(),
                                         "parent": None},
                         data=world.fingerprint, version=zoo.ZOO_VERSION)
    assert fp32 == untagged  # the keys of CPU runs are those of before
    precision.configure("bf16", CPU)
    assert zoo.entry_key(entry, world, cache, "smoke") != fp32


class PooledToy(nn.Module):
    """Stands in for pytorch-fid's InceptionV3: a conv, a global pool, a list of outputs."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [self.conv(x).mean(dim=(2, 3), keepdim=True)]


def test_fid_features_are_autocast_but_statistics_stay_float64() -> None:
    precision.configure("bf16", CPU)
    model = PooledToy()
    seen = conv_dtypes(model)
    images = torch.rand(6, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    features = inception_features(model, images, batch_size=4)
    assert set(seen) == {torch.bfloat16}
    assert features.dtype == torch.float64
    precision.configure("fp32", CPU)
    exact = inception_features(model, images, batch_size=4)
    assert set(seen[2:]) == {torch.float32}
    assert frechet_distance(features, exact) < 1e-3  # bf16 moves the features by ~1e-3


def test_metric_logits_and_features_come_back_float32_under_bf16() -> None:
    precision.configure("bf16", CPU)

    class Contract(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Conv2d(3, 4, 3)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            h = self.body(x).mean(dim=(2, 3))
            return h, h

    model = Contract()
    seen = conv_dtypes(model)
    logits, features = logits_and_features(model, torch.rand(5, 3, 8, 8), batch_size=2)
    assert set(seen) == {torch.bfloat16}
    assert logits.dtype == features.dtype == torch.float32


def test_gradient_penalty_runs_in_float32_inside_autocast() -> None:
    critic = Critic(16, 0.125)
    seen = conv_dtypes(critic)
    real, fake = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        penalty = gradient_penalty(critic, real, fake)
    assert penalty.dtype == torch.float32 and set(seen) == {torch.float32}


def test_descend_computes_the_loss_under_autocast(ctx) -> None:
    precision.configure("bf16", CPU)
    layer = nn.Linear(4, 4)
    z = torch.ones(2, 4, requires_grad=True)
    dtypes = []

    def loss() -> torch.Tensor:
        out = layer(z)
        dtypes.append(out.dtype)
        return out.float().pow(2).sum()

    descend(torch.optim.SGD([z], lr=0.1), loss, 2, ctx, "toy")
    assert dtypes == [torch.bfloat16] * 2 and z.dtype == torch.float32


def test_loss_scaler_clips_the_gradients_it_steps() -> None:
    weight = nn.Parameter(torch.zeros(3))
    optimiser = torch.optim.SGD([weight], lr=1.0)
    precision.LossScaler(CPU).step((weight * torch.tensor([30.0, 40.0, 0.0])).sum(), optimiser,
                                   max_grad_norm=5.0)
    assert torch.allclose(weight.detach(), torch.tensor([-3.0, -4.0, 0.0]))


def test_plan_hours_follow_the_run_precision() -> None:
    parser = argparse.ArgumentParser()
    add_plan_arguments(parser)
    assert parser.parse_args([]).precision is None
    assert throughput_policy(None, resolve("smoke")) == "auto"
    assert throughput_policy(None, resolve("smoke", None, ["run.precision=fp32"])) == "fp32"
    assert throughput_policy("fp32", resolve("smoke")) == "fp32"
    gpu = get_gpu("rtx4090")
    assert gpu.tflops("auto") == gpu.tflops("fp16") == gpu.tflops("bf16") == 165.2
    assert gpu.tflops("fp32") == 82.6
    with pytest.raises(UnknownNameError, match="unknown precision 'fp8'"):
        gpu.tflops("fp8")


def test_margin_objective_weights_keep_float32_under_bf16_training() -> None:
    precision.configure("bf16", CPU)
    cfg = smoke(kind="open", loss="arcface", epochs=1)
    public = toy_split(4, 8, name="public")
    objective = build_objective(cfg, public.num_classes)
    assert isinstance(objective, MarginObjective)
    target = build_target(cfg, 4)
    fit(target, objective, public, cfg, progress=False)
    assert all(p.dtype == torch.float32 for p in (*target.parameters(),
                                                   *objective.parameters()))
