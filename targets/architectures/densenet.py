"""DenseNet-121/161/169/201 (Huang et al., CVPR 2017) in the torchvision key layout.

The layers are torchvision's own (``torchvision.models.densenet.DenseNet``): ``features`` (stem
``conv0 / norm0 / pool0``, ``denseblockN`` and ``transitionN``, ``norm5``) and the classifier
``classifier``, so torchvision and PPA DenseNet checkpoints (PPA wraps them in ``model.``, which
:func:`~mibench.targets.checkpoints.import_checkpoint` strips) load strictly. ``width`` scales the
growth rate and the stem; the embedding is the pooled ``norm5`` output (ReLU → global average),
so ``feature_dim`` is set by the architecture (1024 for DenseNet-121 at width 1). The stem and
three transitions shrink the input 32×: inputs need ≥ :data:`MIN_RESOLUTION` px. ``dropout`` is
torchvision's ``drop_rate`` after each dense layer (0 in the published ImageNet models).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor
from torchvision.models.densenet import DenseNet as TorchvisionDenseNet

from mibench.targets.architectures.base import Backbone, scaled

MIN_RESOLUTION = 32
BLOCKS: dict[int, tuple[tuple[int, int, int, int], int, int]] = {
    # depth: (layers per dense block, growth rate, stem channels), torchvision's values
    121: ((6, 12, 24, 16), 32, 64),
    161: ((6, 12, 36, 24), 48, 96),
    169: ((6, 12, 32, 32), 32, 64),
    201: ((6, 12, 48, 32), 32, 64),
}


class DenseNet(Backbone):
    """DenseNet-``depth`` feature extractor (+ torchvision's ``classifier`` head if closed-set)."""

    head_key = "classifier"

    def __init__(self, depth: int, *, width: float = 1.0, num_classes: int | None = None,
                 dropout: float = 0.0) -> None:
        if depth not in BLOCKS:
            raise ValueError(f"DenseNet depth must be one of {sorted(BLOCKS)}, got {depth}")
        blocks, growth, stem = BLOCKS[depth]
        network = TorchvisionDenseNet(growth_rate=scaled(growth, width), block_config=blocks,
                                      num_init_features=scaled(stem, width), drop_rate=dropout)
        super().__init__(network.classifier.in_features, num_classes)
        self.features = network.features
        self.add_head()

    def embed(self, x: Tensor) -> Tensor:
        if min(x.shape[-2:]) < MIN_RESOLUTION:
            raise ValueError(f"DenseNet needs inputs of at least {MIN_RESOLUTION} px, "
                             f"got {tuple(x.shape[-2:])}")
        return F.adaptive_avg_pool2d(F.relu(self.features(x)), 1).flatten(1)
