"""Face-recognition backbones in their published state-dict layouts (see each module)."""

from __future__ import annotations

from mibench.targets.architectures.base import Backbone
from mibench.targets.architectures.densenet import MIN_RESOLUTION as DENSENET_MIN_RESOLUTION
from mibench.targets.architectures.densenet import DenseNet
from mibench.targets.architectures.inception_resnet import MIN_RESOLUTION, InceptionResnetV1
from mibench.targets.architectures.iresnet import IResNet
from mibench.targets.architectures.irse import IRSE
from mibench.targets.architectures.resnet import MIN_RESOLUTION as RESNET_MIN_RESOLUTION
from mibench.targets.architectures.resnet import ResNet

__all__ = ["Backbone", "DENSENET_MIN_RESOLUTION", "DenseNet", "IResNet", "IRSE",
           "InceptionResnetV1", "MIN_RESOLUTION", "RESNET_MIN_RESOLUTION", "ResNet"]
