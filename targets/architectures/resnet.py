"""ResNet-18/34/50/101/152 (He et al., CVPR 2016) in the torchvision key layout: PPA's targets.

PPA (Struppek et al., ICML 2022, §4.1) attacks torchvision ResNets (ResNet-152 on CelebA and
FaceScrub) wrapped in a ``Classifier`` that stores the net as ``model``; its checkpoints carry
``model.conv1.weight`` … ``model.fc.bias``, and
:func:`~mibench.targets.checkpoints.import_checkpoint` strips the ``model.`` prefix. The layers
are torchvision's own (``torchvision.models.resnet.ResNet`` with ``BasicBlock`` / ``Bottleneck``):
``conv1 / bn1``, ``layer1`` … ``layer4`` and the classifier ``fc``, so at ``width == 1`` the state
dict is that of ``torchvision.models.resnet{depth}(weights=None)``. ``width`` scales the stem and
every stage's planes (ours, for the CPU presets). The embedding is the globally average-pooled
``layer4`` output (``feature_dim`` = 512·expansion·width: 2048 for ResNet-152). The stem and the
four stages shrink the input 32×: inputs need ≥ :data:`MIN_RESOLUTION` px.
"""

from __future__ import annotations

from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock, Bottleneck
from torchvision.models.resnet import ResNet as TorchvisionResNet

from mibench.targets.architectures.base import Backbone, scaled

MIN_RESOLUTION = 32
STEM = 64
BLOCKS: dict[int, tuple[type[BasicBlock | Bottleneck], tuple[int, int, int, int]]] = {
    # depth: (residual block, blocks per stage), as torchvision.models.resnet{depth}
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
    152: (Bottleneck, (3, 8, 36, 3)),
}


class _ScaledResNet(TorchvisionResNet):
    """torchvision's ResNet with every stage's planes (and the stem) scaled by ``width``."""

    def __init__(self, depth: int, width: float) -> None:
        self.width = width
        block, layers = BLOCKS[depth]
        super().__init__(block, list(layers))
        stem = scaled(STEM, width)
        if stem != STEM:
            self.conv1 = nn.Conv2d(3, stem, kernel_size=7, stride=2, padding=3, bias=False)
            self.bn1 = nn.BatchNorm2d(stem)
            nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")

    def _make_layer(self, block: type[BasicBlock | Bottleneck], planes: int, blocks: int,
                    stride: int = 1, dilate: bool = False) -> nn.Sequential:
        if planes == STEM and self.inplanes == STEM:  # the first stage: its input is the stem
            self.inplanes = scaled(STEM, self.width)
        return super()._make_layer(block, scaled(planes, self.width), blocks, stride, dilate)


class ResNet(Backbone):
    """ResNet-``depth`` feature extractor (+ torchvision's ``fc`` head if closed-set)."""

    head_key = "fc"

    def __init__(self, depth: int, *, width: float = 1.0,
                 num_classes: int | None = None) -> None:
        if depth not in BLOCKS:
            raise ValueError(f"ResNet depth must be one of {sorted(BLOCKS)}, got {depth}")
        network = _ScaledResNet(depth, width)
        block = BLOCKS[depth][0]
        super().__init__(block.expansion * scaled(512, width), num_classes)
        self.conv1, self.bn1 = network.conv1, network.bn1
        self.layer1, self.layer2 = network.layer1, network.layer2
        self.layer3, self.layer4 = network.layer3, network.layer4
        self.add_head()

    def embed(self, x: Tensor) -> Tensor:
        if min(x.shape[-2:]) < MIN_RESOLUTION:
            raise ValueError(f"ResNet needs inputs of at least {MIN_RESOLUTION} px, "
                             f"got {tuple(x.shape[-2:])}")
        x = nn.functional.max_pool2d(nn.functional.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return x.mean((2, 3))
