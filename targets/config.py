"""``TargetConfig``: which network, which loss, how to train it (defaults = published values).

Defaults follow the published recipes at 112×112: insightface ``arcface_torch`` (SGD, lr 0.1,
momentum 0.9, weight decay 5e-4, batch 128, 20 epochs; ArcFace s=64 m=0.5, CosFace s=64 m=0.35)
and FaceNet's triplet margin 0.2. The KEDMI closed-set targets were trained with SGD lr 0.01,
weight decay 1e-4, batch 64 (``CLOSED_SET_RECIPE``; the zoo applies it to closed-set entries).
Presets scale width, resolution, embedding size and epochs, never the losses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

from mibench.config import Config, param
from mibench.errors import ConfigError
from mibench.targets.architectures import (DENSENET_MIN_RESOLUTION, MIN_RESOLUTION,
                                          RESNET_MIN_RESOLUTION)

DEPTHS: dict[str, tuple[int, ...]] = {
    "iresnet": (18, 34, 50, 100),
    "irse": (50, 100, 152),
    "inception_resnet": (),
    "densenet": (121, 161, 169, 201),
    "resnet": (18, 34, 50, 101, 152),
}
MIN_RESOLUTIONS: dict[str, int] = {"inception_resnet": MIN_RESOLUTION,
                                   "densenet": DENSENET_MIN_RESOLUTION,
                                   "resnet": RESNET_MIN_RESOLUTION}
NO_DROPOUT: tuple[str, ...] = ("irse", "resnet")
LOSSES: dict[str, tuple[str, ...]] = {
    "closed": ("softmax",),
    "open": ("arcface", "cosface", "triplet"),
}
PUBLISHED_MARGIN: dict[str, float] = {"arcface": 0.5, "cosface": 0.35, "triplet": 0.2}
CLOSED_SET_RECIPE: Mapping[str, Any] = {"lr": 0.01, "weight_decay": 1e-4, "batch_size": 64}
# Training knobs added after the zoo's first release; off by default (the published recipes),
# and left out of an entry's cache identity while off.
ADDED_KNOBS: tuple[str, ...] = ("dropout", "warmup_epochs", "label_smoothing", "defense",
                                 "defense_config")


@dataclass
class TargetConfig(Config):
    """A target model: architecture, size, loss and training schedule."""

    arch: str = param("iresnet", "network family: iresnet (ArcFace/CosFace), irse (IR-152, "
                      "face.evoLVe IR-50), inception_resnet (FaceNet), densenet (the "
                      "evaluation model), resnet (torchvision, PPA's ResNet-152)",
                      choices=tuple(DEPTHS))
    depth: int = param(50, "layers: iresnet 18/34/50/100, irse 50/100/152, densenet "
                       "121/161/169/201, resnet 18/34/50/101/152; not used by "
                       "inception_resnet")
    layout: str = param("kedmi", "irse key layout: kedmi (IR152/FaceNet64 targets) or "
                        "evolve112 (the FaceNet112 evaluation model)",
                        choices=("kedmi", "evolve112"))
    width: float = param(1.0, "channel multiplier (1.0 = published widths)", gt=0.0, le=4.0)
    resolution: int = param(112, "input side in pixels (Inception-ResNet needs at least "
                            f"{MIN_RESOLUTION}, DenseNet {DENSENET_MIN_RESOLUTION}, ResNet "
                            f"{RESNET_MIN_RESOLUTION}; smaller "
                            "values are raised to it)", ge=8)
    feature_dim: int = param(512, "embedding size (DenseNet, ResNet: set by their width "
                            "instead)", ge=2)
    dropout: float | None = param(None, "dropout probability; default = the architecture's "
                                  "published value (FaceNet 0.6 before its last linear layer, "
                                  "IResNet and DenseNet (between dense layers) 0; IR-SE and "
                                  "ResNet have none)", ge=0.0, lt=1.0)
    kind: str = param("open", "closed: linear head over the private identities; open: "
                      "embedding model + enrolled gallery", choices=tuple(LOSSES))
    loss: str = param("arcface", "softmax (closed-set) or arcface / cosface / triplet (open-set)",
                      choices=("softmax", "arcface", "cosface", "triplet"))
    margin: float | None = param(None, "margin; default = the loss's published value "
                                 "(ArcFace 0.5, CosFace 0.35, triplet 0.2)", ge=0.0)
    scale: float = param(64.0, "logit scale s of the margin heads and the open-set gallery",
                         gt=0.0)
    pixel_norm: str = param("arch", "input normalisation: arch (the published (x-0.5)/0.5, "
                            "PPA's default for ResNets, facenet-pytorch (x-127.5)/128), half "
                            "((x-0.5)/0.5 for any arch), imagenet (torchvision's ImageNet "
                            "mean/std, PPA's alternative) or none ([0,1], KEDMI/GMI targets)",
                            choices=("arch", "half", "imagenet", "none"))
    epochs: int = param(20, "training epochs", ge=1)
    batch_size: int = param(128, "training batch size", ge=2)
    lr: float = param(0.1, "SGD learning rate (cosine decay to 0)", gt=0.0)
    warmup_epochs: int = param(0, "epochs of linear lr warm-up before the cosine decay",
                               ge=0)
    momentum: float = param(0.9, "SGD momentum", ge=0.0, lt=1.0)
    weight_decay: float = param(5e-4, "SGD weight decay", ge=0.0)
    images_per_identity: int = param(4, "triplet P×K batches: images per identity (K)", ge=2)
    augment: bool = param(True, "light augmentation: flip, small crop jitter, brightness")
    label_smoothing: float = param(0.0, "softmax label smoothing (0 = off, the published "
                                   "recipe)", ge=0.0, lt=1.0)
    seed: int = param(0, "seed for initialisation, batch order and augmentation", ge=0)
    defense: str = param("", "model-inversion defense trained in ('' = none; see `mibench "
                         "list defenses`)")
    defense_config: dict = param({}, "the defense's resolved config")

    presets: ClassVar[Mapping[str, Mapping[str, Any]]] = {
        "smoke": {"width": 0.0625, "resolution": 32, "feature_dim": 32, "epochs": 1,
                  "batch_size": 16},
        "mini": {"width": 0.25, "resolution": 64, "feature_dim": 128, "epochs": 8,
                 "batch_size": 64},
        "paper": {"width": 1.0, "resolution": 112, "feature_dim": 512, "epochs": 20,
                  "batch_size": 128},
    }

    def validate(self) -> None:
        depths = DEPTHS[self.arch]
        if depths and self.depth not in depths:
            raise ConfigError(f"TargetConfig.depth: {self.arch} comes in depths "
                              f"{list(depths)}, got {self.depth}")
        if self.arch in ("densenet", "resnet") and self.kind == "open":
            raise ConfigError(f"TargetConfig.arch: {self.arch} is built as a closed-set "
                              "classifier (its features are its pooled channels); use "
                              "kind=closed")
        if self.arch in NO_DROPOUT and self.dropout is not None:
            raise ConfigError(f"TargetConfig.dropout: the {self.arch} networks have no dropout "
                              "layer")
        if self.loss != "softmax" and self.label_smoothing:
            raise ConfigError("TargetConfig.label_smoothing applies to the softmax loss only, "
                              f"not {self.loss}")
        if self.loss not in LOSSES[self.kind]:
            raise ConfigError(f"TargetConfig.loss: a {self.kind}-set target trains with "
                              f"{' / '.join(LOSSES[self.kind])}, got {self.loss!r}")

    def identity(self) -> dict[str, Any]:
        """``to_dict()`` without the :data:`ADDED_KNOBS` that are off, so that adding one did
        not change the cache key of any entry that does not use it."""
        defaults = TargetConfig()
        return {k: v for k, v in self.to_dict().items()
                if k not in ADDED_KNOBS or v != getattr(defaults, k)}

    @property
    def input_resolution(self) -> int:
        """The side the network sees: ``resolution``, raised to the architecture's minimum."""
        return max(self.resolution, MIN_RESOLUTIONS.get(self.arch, 0))

    @property
    def resolved_margin(self) -> float:
        """``margin`` or, when unset, the loss's published margin (0 for softmax)."""
        if self.margin is not None:
            return self.margin
        return PUBLISHED_MARGIN.get(self.loss, 0.0)
