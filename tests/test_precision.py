"""The precision policy: what each policy means per device, autocast, loss scaling, key tags."""

from __future__ import annotations

import pytest
import torch

from mibench import precision
from mibench.errors import ConfigError

CPU = torch.device("cpu")


def test_auto_is_fp32_on_the_cpu_and_keys_stay_untagged():
    assert precision.configure("auto", CPU).dtype is None
    assert precision.key_tag() == ""
    layer = torch.nn.Linear(4, 4)
    with precision.autocast(CPU):
        assert layer(torch.ones(2, 4)).dtype == torch.float32


def test_bf16_autocasts_matmuls_on_the_cpu_and_tags_keys():
    assert precision.configure("bf16", CPU).name == "bf16"
    assert precision.key_tag() == "bf16"
    layer = torch.nn.Linear(4, 4)
    with precision.autocast("cpu"):
        assert layer(torch.ones(2, 4)).dtype == torch.bfloat16
    assert layer(torch.ones(2, 4)).dtype == torch.float32  # only inside the context
    with precision.autocast("meta"):  # another device type than configured: untouched
        assert layer.to("meta")(torch.ones(2, 4, device="meta")).dtype == torch.float32


def test_loss_scaler_steps_plainly_without_fp16_on_cuda():
    precision.configure("bf16", CPU)
    weight = torch.nn.Parameter(torch.ones(3))
    optimiser = torch.optim.SGD([weight], lr=0.5)
    scaler = precision.LossScaler(CPU)
    assert not scaler.enabled
    scaler.step((weight * 2).sum(), optimiser)
    assert torch.equal(weight.detach(), torch.zeros(3))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_auto_on_cuda_is_reduced_precision_with_scaling_only_for_fp16():
    cuda = torch.device("cuda")
    chosen = precision.configure("auto", cuda)
    assert chosen.dtype in (torch.bfloat16, torch.float16)
    assert precision.LossScaler(cuda).enabled == (chosen.dtype == torch.float16)
    assert precision.configure("fp16", cuda).dtype == torch.float16
    assert precision.LossScaler(cuda).enabled


def test_unknown_policy_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown precision 'fp8'; choose one of auto"):
        precision.configure("fp8", CPU)


def test_compile_is_off_by_default_and_refuses_unknown_settings():
    layer = torch.nn.Linear(4, 4)
    precision.configure("auto", CPU)
    assert precision.compiled(layer) is layer
    with pytest.raises(ConfigError, match="unknown compile setting 'yes'"):
        precision.configure("auto", CPU, "yes")


def test_compile_on_wraps_each_module_once_sharing_its_parameters():
    precision.configure("fp32", CPU, "on")
    layer = torch.nn.Linear(4, 4)
    wrapped = precision.compiled(layer)
    assert isinstance(wrapped, torch._dynamo.eval_frame.OptimizedModule)
    assert precision.compiled(layer) is wrapped
    assert wrapped._orig_mod is layer and list(wrapped.parameters()) == list(layer.parameters())


def test_diffusion_training_and_sampling_run_through_the_compiled_unet(monkeypatch, ctx):
    from mibench.attacks.priors.diffusion import ConditionalDenoiser, ddim_sample, train_denoiser

    calls = []

    class Recorded(torch.nn.Module):  # stands in for torch.compile's wrapper (no code generation)
        def __init__(self, module):
            super().__init__()
            self.module = module

        def forward(self, *args):
            calls.append(len(args[0]))
            return self.module(*args)

    monkeypatch.setattr(torch, "compile", Recorded)
    precision.configure("fp32", CPU, "on")
    model = ConditionalDenoiser(sample_size=8, channels=3, condition_dim=4, block_channels=(8,),
                                attention=(True,), layers_per_block=1, token_dim=4, head_dim=4)
    conditions = torch.randn(6, 4)
    train_denoiser(model, ctx, samples=lambda i, g: torch.rand(len(i), 3, 8, 8, generator=g),
                   conditions=conditions, steps=2, batch_size=3, lr=1e-3, warmup=1,
                   weight_decay=0.0, betas=(0.9, 0.99), max_ema_decay=0.9,
                   condition_dropout=0.0)
    ddim_sample(model, conditions[:2], steps=2, generator=torch.Generator().manual_seed(0),
                clip_sample=False)
    assert calls == [3, 3, 2, 2]   # two training steps of 3, two sampling steps of 2
