"""Architectures: published key names and shapes at paper size; small presets still run."""

from __future__ import annotations


import pytest
import torch
from torch import nn

from mibench.errors import ConfigError
from mibench.targets import TargetConfig, build_backbone, build_target
from mibench.targets.architectures import IRSE, InceptionResnetV1, IResNet


def shapes(module: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("depth,published", [(18, 24_025_600), (34, 34_139_328),
                                             (50, 43_590_848), (100, 65_156_160)])
def test_iresnet_parameter_counts_match_insightface(depth: int, published: int) -> None:
    with torch.device("meta"):
        assert n_params(IResNet(depth)) == published  # insightface: 24.0/34.1/43.6/65.2M


def test_iresnet50_published_keys_and_shapes() -> None:
    with torch.device("meta"):
        model = IResNet(50)
    s = shapes(model)
    assert s["conv1.weight"] == (64, 3, 3, 3)
    assert s["prelu.weight"] == (64,)
    assert s["layer1.0.downsample.0.weight"] == (64, 64, 1, 1)
    assert s["layer2.0.downsample.1.running_mean"] == (128,)
    assert s["layer3.13.bn3.weight"] == (256,) and "layer3.14.bn1.weight" not in s
    assert s["layer4.2.conv2.weight"] == (512, 512, 3, 3)
    assert s["bn2.weight"] == (512,)
    assert s["fc.weight"] == (512, 25088)
    assert isinstance(model.features, nn.BatchNorm1d) and s["features.weight"] == (512,)
    assert not model.features.weight.requires_grad
    assert "layer1.1.downsample.0.weight" not in s
    assert not any(k.startswith("classifier") for k in s)


def test_ir152_kedmi_layout() -> None:
    with torch.device("meta"):
        model = IRSE(152, resolution=64, num_classes=1000)
    s = shapes(model)
    assert s["feature.input_layer.0.weight"] == (64, 3, 3, 3)
    assert s["feature.input_layer.2.weight"] == (64,)
    assert "feature.body.49.res_layer.4.weight" in s  # 3 + 8 + 36 + 3 = 50 units
    assert "feature.body.50.res_layer.0.weight" not in s
    assert "feature.body.0.shortcut_layer.0.weight" not in s  # max-pool shortcut
    assert s["feature.body.3.shortcut_layer.0.weight"] == (128, 64, 1, 1)
    assert s["feature.body.11.res_layer.1.weight"] == (256, 128, 3, 3)
    assert s["output_layer.3.weight"] == (512, 512 * 4 * 4)  # KEDMI IR152 at 64×64
    assert s["output_layer.4.running_var"] == (512,)
    assert s["fc_layer.weight"] == (1000, 512)
    assert not any(k.startswith("feature.output_layer") for k in s)


def test_evolve_ir50_layouts() -> None:
    with torch.device("meta"):
        kedmi = shapes(IRSE(50, num_classes=1000))
        facenet112 = shapes(IRSE(50, num_classes=1000, layout="evolve112"))
    assert "feature.body.23.res_layer.0.weight" in kedmi  # 3 + 4 + 14 + 3 = 24 units
    assert "feature.body.24.res_layer.0.weight" not in kedmi
    assert kedmi["output_layer.3.weight"] == (512, 512 * 7 * 7)
    assert facenet112["feature.output_layer.3.weight"] == (512, 512 * 7 * 7)
    assert not any(k.startswith("output_layer") for k in facenet112)


def test_inception_resnet_v1_facenet_pytorch_layout() -> None:
    with torch.device("meta"):
        model = InceptionResnetV1(num_classes=10)
    s = shapes(model)
    assert s["conv2d_1a.conv.weight"] == (32, 3, 3, 3)
    assert s["conv2d_4b.bn.running_mean"] == (256,)
    assert s["repeat_1.4.branch2.2.conv.weight"] == (32, 32, 3, 3)
    assert s["repeat_1.0.conv2d.bias"] == (256,)
    assert s["mixed_6a.branch1.2.conv.weight"] == (256, 192, 3, 3)
    assert s["repeat_2.9.branch1.1.conv.weight"] == (128, 128, 1, 7)
    assert s["mixed_7a.branch2.2.conv.weight"] == (256, 256, 3, 3)
    assert s["block8.conv2d.weight"] == (1792, 384, 1, 1)
    assert s["last_linear.weight"] == (512, 1792) and "last_linear.bias" not in s
    assert s["last_bn.weight"] == (512,)
    assert s["logits.weight"] == (10, 512)
    assert len(s) == 716  # facenet-pytorch InceptionResnetV1(classify=True) state dict
    assert model.last_bn.eps == 1e-3
    assert n_params(model) - 10 * 512 - 10 == 23_482_624  # facenet-pytorch: 23.5M


@pytest.mark.parametrize("arch,depth", [("iresnet", 18), ("irse", 50), ("inception_resnet", 50)])
def test_smoke_targets_run_on_any_input_size(arch: str, depth: int) -> None:
    cfg = TargetConfig.resolve("smoke", {"arch": arch, "depth": depth, "kind": "closed",
                                         "loss": "softmax"})
    target = build_target(cfg, num_classes=5).eval()
    logits, features = target(torch.rand(2, 3, 48, 40))
    assert logits.shape == (2, 5) and features.shape == (2, cfg.feature_dim)


def test_width_scales_channels_and_resolution_scales_fc() -> None:
    cfg = TargetConfig.resolve("smoke", {"arch": "iresnet", "depth": 18})
    s = shapes(build_backbone(cfg))
    assert s["conv1.weight"] == (4, 3, 3, 3)  # 64 × 1/16
    assert s["fc.weight"] == (32, 32 * 2 * 2)  # 512/16 channels, 32 px → 2×2


def test_inception_resolution_is_raised_to_its_minimum() -> None:
    cfg = TargetConfig.resolve("smoke", {"arch": "inception_resnet"})
    assert cfg.input_resolution == 75
    assert build_target(cfg, num_classes=3).resolution == 75


def test_presets_and_validation() -> None:
    paper = TargetConfig.resolve("paper")
    assert (paper.width, paper.resolution, paper.feature_dim) == (1.0, 112, 512)
    assert TargetConfig.resolve("mini").width < 1.0
    assert TargetConfig(loss="cosface").resolved_margin == 0.35
    assert TargetConfig().resolved_margin == 0.5
    with pytest.raises(ConfigError, match="depths"):
        TargetConfig(arch="irse", depth=18)
    with pytest.raises(ConfigError, match="closed-set target trains with softmax"):
        TargetConfig(kind="closed", loss="arcface")
