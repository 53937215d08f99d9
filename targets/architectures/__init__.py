"""Face-recognition backbones in their published state-dict layouts (see each module)."""

from __future__ import annotations

from mibench.targets.architectures.base import Backbone
from mibench.targets.architectures.inception_resnet import MIN_RESOLUTION, InceptionResnetV1
from mibench.targets.architectures.iresnet import IResNet
from mibench.targets.architectures.irse import IRSE

__all__ = ["Backbone", "IResNet", "IRSE", "InceptionResnetV1", "MIN_RESOLUTION"]
