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
