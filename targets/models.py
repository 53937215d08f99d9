"""Targets built from a :class:`TargetConfig`: closed-set classifiers and open-set embedders.

Both wrap a :class:`~mibench.targets.architectures.Backbone` as ``self.backbone``, whose own
state dict has the published key names; :meth:`load_published` loads such a state dict (e.g. from
:func:`mibench.targets.checkpoints.import_checkpoint`) strictly.
"""

from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from mibench.target import OpenSetTarget, Target
from mibench.targets.architectures import (IRSE, Backbone, DenseNet, InceptionResnetV1,
                                          IResNet, ResNet)
from mibench.targets.config import TargetConfig
from mibench.targets.defenses import check_defense, modify_backbone
from mibench.targets.errors import TargetError
from mibench.targets.strict import load_strict
from mibench.world import Split

Stats = tuple[tuple[float, float, float], tuple[float, float, float]]
HALF: Stats = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
FACENET_MEAN, FACENET_STD = 127.5 / 255, 128.0 / 255  # fixed_image_standardization
FACENET: Stats = ((FACENET_MEAN, FACENET_MEAN, FACENET_MEAN),
                  (FACENET_STD, FACENET_STD, FACENET_STD))
IDENTITY: Stats = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
IMAGENET: Stats = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))  # torchvision's ImageNet stats
BACKBONES: dict[str, type[Backbone]] = {
    "iresnet": IResNet, "irse": IRSE, "inception_resnet": InceptionResnetV1, "densenet": DenseNet,
    "resnet": ResNet}


def pixel_stats(cfg: TargetConfig) -> Stats:
    """(mean, std) applied to [0,1] inputs: the architecture's published convention or none."""
    if cfg.pixel_norm == "none":
        return IDENTITY
    if cfg.pixel_norm == "imagenet":
        return IMAGENET
    return FACENET if cfg.arch == "inception_resnet" and cfg.pixel_norm == "arch" else HALF


def build_backbone(cfg: TargetConfig, num_classes: int | None = None) -> Backbone:
    """The network of ``cfg`` (with a closed-set head over ``num_classes`` if given), as its
    defense, if any, modifies it."""
    check_defense(cfg.defense, cfg.arch)
    return modify_backbone(cfg.defense, cfg.defense_config, _published_backbone(cfg, num_classes))


def _published_backbone(cfg: TargetConfig, num_classes: int | None) -> Backbone:
    dropout = {} if cfg.dropout is None else {"dropout": cfg.dropout}
    if cfg.arch == "iresnet":
        return IResNet(cfg.depth, width=cfg.width, resolution=cfg.input_resolution,
                       feature_dim=cfg.feature_dim, num_classes=num_classes, **dropout)
    if cfg.arch == "irse":
        return IRSE(cfg.depth, width=cfg.width, resolution=cfg.input_resolution,
                    feature_dim=cfg.feature_dim, num_classes=num_classes,
                    layout="evolve112" if cfg.layout == "evolve112" else "kedmi")
    if cfg.arch == "densenet":
        return DenseNet(cfg.depth, width=cfg.width, num_classes=num_classes, **dropout)
    if cfg.arch == "resnet":
        return ResNet(cfg.depth, width=cfg.width, num_classes=num_classes)
    return InceptionResnetV1(width=cfg.width, feature_dim=cfg.feature_dim,
                             num_classes=num_classes, **dropout)


class ClosedSetModel(Target):
    """Backbone + linear head over the private identities (the IR-152 / evoLVe targets)."""

    kind = "closed"

    def __init__(self, backbone: Backbone, *, resolution: int, stats: Stats = HALF) -> None:
        if backbone.num_classes is None:
            raise TargetError("a closed-set target needs a backbone built with num_classes")
        super().__init__(num_classes=backbone.num_classes, resolution=resolution,
                         feature_dim=backbone.feature_dim, mean=stats[0], std=stats[1])
        self.backbone = backbone

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.embed(x)

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        return self.backbone.classify(features)

    def linear_head(self) -> nn.Linear:
        head: nn.Linear = getattr(self.backbone, self.backbone.head_key)
        return head

    def load_published(self, state_dict: Mapping[str, torch.Tensor],
                       source: str = "state dict") -> None:
        """Load a published-layout state dict (backbone + head) strictly."""
        load_strict(self.backbone, state_dict, source)


class OpenSetModel(OpenSetTarget):
    """Embedding backbone + a gallery of one template per private identity (ArcFace, CosFace,
    FaceNet); logits are ``scale``·cos(feature, template)."""

    def __init__(self, backbone: Backbone, *, num_classes: int, resolution: int,
                 scale: float = 64.0, stats: Stats = HALF) -> None:
        if backbone.num_classes is not None:
            raise TargetError("an open-set target's backbone carries no classifier head")
        super().__init__(num_classes=num_classes, resolution=resolution,
                         feature_dim=backbone.feature_dim, scale=scale, mean=stats[0],
                         std=stats[1])
        self.backbone = backbone

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.embed(x)

    @torch.no_grad()
    def enrol_from_split(self, split: Split, batch_size: int = 256) -> None:
        """Enrol one template per private identity: the L2-normalised mean of the normalised
        embeddings of all that identity's images in ``split`` (private-train).

        This is the ``mean`` protocol, the gallery the zoo trains, measures and caches. A run
        enrols its open-set targets under ``run.enrolment`` (:mod:`mibench.targets.enrolment`):
        by default ``single``, one private-train image per identity, as FGMIA's code.
        """
        if split.num_classes != self.num_classes:
            raise TargetError(f"split {split.name} has {split.num_classes} identities but the "
                              f"target has {self.num_classes}; enrol from private-train")
        features = embed_split(self, split, batch_size)
        self.enrol(class_templates(features, split.labels, self.num_classes))

    def load_published(self, state_dict: Mapping[str, torch.Tensor],
                       source: str = "state dict") -> None:
        """Load a published-layout backbone strictly. A published classifier (e.g.
        facenet-pytorch's ``logits`` over its pre-training identities) is not part of an
        embedding model and is dropped; every other key must match."""
        head = f"{self.backbone.head_key}."
        load_strict(self.backbone, {k: v for k, v in state_dict.items()
                                    if not k.startswith(head)}, source)


@torch.no_grad()
@torch.no_grad()
def embed_split(target: Target, split: Split, batch_size: int = 256) -> torch.Tensor:
    """Features of every image of ``split`` (eval mode, on the target's device), on the CPU."""
    was_training = target.training
    target.eval()
    device = next(target.parameters()).device
    chunks = [target.embed(target.preprocess(x.to(device))).cpu()
              for x, _ in split.batches(batch_size)]
    target.train(was_training)
    return torch.cat(chunks)


def class_templates(features: torch.Tensor, labels: torch.Tensor,
                    num_classes: int) -> torch.Tensor:
    """Per class: the normalised mean of the normalised features (num_classes×dim)."""
    counts = torch.bincount(labels, minlength=num_classes)
    if bool((counts == 0).any()):
        absent = torch.nonzero(counts == 0).flatten().tolist()
        raise TargetError(f"classes {absent[:5]} have no images to enrol; every identity "
                          "needs at least one")
    sums = torch.zeros(num_classes, features.shape[1], dtype=features.dtype, device=features.device)
    sums.index_add_(0, labels.to(features.device), F.normalize(features, dim=1))
    return F.normalize(sums, dim=1)


def build_target(cfg: TargetConfig, num_classes: int) -> Target:
    """An untrained target for ``num_classes`` private identities, initialised from ``cfg.seed``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        if cfg.kind == "closed":
            return ClosedSetModel(build_backbone(cfg, num_classes),
                                  resolution=cfg.input_resolution, stats=pixel_stats(cfg))
        return OpenSetModel(build_backbone(cfg), num_classes=num_classes,
                            resolution=cfg.input_resolution, scale=cfg.scale,
                            stats=pixel_stats(cfg))
