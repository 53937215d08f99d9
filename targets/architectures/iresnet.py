"""IResNet-18/34/50/100, the ArcFace/CosFace backbone of insightface ``arcface_torch``.

Follows ``deepinsight/insightface: recognition/arcface_torch/backbones/iresnet.py`` (Duta et al.,
"Improved Residual Networks", 2020; Deng et al., ArcFace, CVPR 2019): a 3×3 stem, four stages of
pre-activation basic blocks (BN → conv → BN → PReLU → conv(stride) → BN) that each halve the
resolution, then BN → flatten → FC → BatchNorm1d whose scale is frozen at 1 (``features``).
Key names match the released ``backbone.pth`` files: ``conv1, bn1, prelu, layer1..4, bn2, fc,
features``. insightface publishes no classifier (its margin heads live in the training code), so
the optional closed-set head is ours, named ``classifier``.
"""

from __future__ import annotations

from torch import Tensor, nn

from mibench.targets.architectures.base import Backbone, halved, scaled

BLOCKS: dict[int, tuple[int, int, int, int]] = {
    18: (2, 2, 2, 2),
    34: (3, 4, 6, 3),
    50: (3, 4, 14, 3),
    100: (3, 13, 30, 3),
}
STAGE_CHANNELS = (64, 128, 256, 512)
BN_EPS = 1e-5


class IBasicBlock(nn.Module):
    """Pre-activation basic block; the second conv carries the stride; ``skip = False``
    drops the shortcut (RoLSS)."""

    def __init__(self, in_channels: int, channels: int, stride: int) -> None:
        super().__init__()
        self.skip = True
        self.bn1 = nn.BatchNorm2d(in_channels, eps=BN_EPS)
        self.conv1 = nn.Conv2d(in_channels, channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels, eps=BN_EPS)
        self.prelu = nn.PReLU(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(channels, eps=BN_EPS)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, channels, 1, stride, bias=False),
                nn.BatchNorm2d(channels, eps=BN_EPS))

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        if not self.skip:
            return out
        return out + (x if self.downsample is None else self.downsample(x))


class IResNet(Backbone):
    """IResNet of ``depth`` ∈ {18, 34, 50, 100}; ``width`` scales every channel count."""

    head_key = "classifier"

    def __init__(self, depth: int, *, width: float = 1.0, resolution: int = 112,
                 feature_dim: int = 512, num_classes: int | None = None,
                 dropout: float = 0.0) -> None:
        super().__init__(feature_dim, num_classes)
        if depth not in BLOCKS:
            raise ValueError(f"IResNet depth must be one of {sorted(BLOCKS)}, got {depth}")
        stem = scaled(STAGE_CHANNELS[0], width)
        self.conv1 = nn.Conv2d(3, stem, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem, eps=BN_EPS)
        self.prelu = nn.PReLU(stem)
        in_channels = stem
        stages = zip(BLOCKS[depth], STAGE_CHANNELS, strict=True)
        for index, (count, base) in enumerate(stages, start=1):
            channels = scaled(base, width)
            blocks = [IBasicBlock(in_channels, channels, 2)]
            blocks += [IBasicBlock(channels, channels, 1) for _ in range(count - 1)]
            self.add_module(f"layer{index}", nn.Sequential(*blocks))
            in_channels = channels
        self.bn2 = nn.BatchNorm2d(in_channels, eps=BN_EPS)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_channels * halved(resolution, 4) ** 2, feature_dim)
        self.features = nn.BatchNorm1d(feature_dim, eps=BN_EPS)
        self._initialise()
        self.add_head()

    def _initialise(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        nn.init.constant_(self.features.weight, 1.0)
        self.features.weight.requires_grad = False

    def embed(self, x: Tensor) -> Tensor:
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.dropout(self.bn2(x).flatten(1))
        return self.features(self.fc(x))
