"""One trainer for every target: seeded SGD with cosine decay, light augmentation, tqdm.

Optional knobs (off in the published recipes; the ``mini`` preset tunes some entries with
them): linear lr warm-up and label smoothing (softmax only); ``TargetConfig.dropout`` is
applied where the network is built (:func:`mibench.targets.models.build_backbone`).

Closed-set targets train on private-train with cross-entropy through their linear head.
Open-set targets train on the public split with an ArcFace/CosFace head or the batch-hard triplet
loss (P×K batches), then enrol one template per private identity from private-train. Gradients
are clipped to norm 5, as insightface ``arcface_torch`` does.
"""

from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from mibench import precision
from mibench.target import Target
from mibench.targets.config import TargetConfig
from mibench.targets.defenses import DefenseObjective, defended_objective
from mibench.targets.errors import TargetError
from mibench.targets.heads import ArcFaceHead, CosFaceHead, MarginHead, triplet_loss
from mibench.targets.models import OpenSetModel, build_target, class_templates, embed_split
from mibench.targets.transfer import channels_last, device_batches, to_device
from mibench.world import UNLABELLED, Split

GRAD_CLIP = 5.0
EVAL_BATCH = 256


@dataclass
class TrainMetrics:
    """What training measured. ``train_accuracy`` is clean (no augmentation, eval mode):
    closed-set through the head, open-set by nearest class-mean template over the training
    identities. ``val_accuracy`` is the target's top-1 on the validation split (private-test).
    ``cpu_time_s`` is the process's CPU time over all threads (with one thread, a measure of
    the work that other jobs on the machine do not inflate)."""

    train_accuracy: float
    val_accuracy: float | None
    final_loss: float
    steps: int
    wall_time_s: float
    cpu_time_s: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Objective(nn.Module):
    """A training loss over a target's outputs; its own parameters (a margin head) train too."""

    def forward(self, target: Target, images: Tensor, labels: Tensor) -> Tensor:
        raise NotImplementedError


class SoftmaxObjective(Objective):
    """Cross-entropy through the target's own linear head (closed-set), optionally with label
    smoothing."""

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.label_smoothing = label_smoothing

    def logits(self, target: Target, images: Tensor, labels: Tensor) -> Tensor:
        return target(images)[0]

    def forward(self, target: Target, images: Tensor, labels: Tensor,
                reduction: str = "mean") -> Tensor:
        return F.cross_entropy(self.logits(target, images, labels), labels,
                               label_smoothing=self.label_smoothing, reduction=reduction)


class MarginObjective(Objective):
    """Cross-entropy over a margin head's logits (ArcFace, CosFace)."""

    def __init__(self, head: MarginHead) -> None:
        super().__init__()
        self.head = head

    def logits(self, target: Target, images: Tensor, labels: Tensor) -> Tensor:
        return self.head(target.embed(target.preprocess(images)), labels)

    def forward(self, target: Target, images: Tensor, labels: Tensor,
                reduction: str = "mean") -> Tensor:
        return F.cross_entropy(self.logits(target, images, labels), labels, reduction=reduction)


class TripletObjective(Objective):
    """FaceNet's batch-hard triplet loss on the embeddings."""

    def __init__(self, margin: float) -> None:
        super().__init__()
        self.margin = margin

    def forward(self, target: Target, images: Tensor, labels: Tensor) -> Tensor:
        return triplet_loss(target.embed(target.preprocess(images)), labels, self.margin)


@contextmanager
def seeded(seed: int, device: str | torch.device) -> Iterator[None]:
    """Seed the global RNGs (CPU, and the CUDA device trained on) inside, restore them after."""
    device = torch.device(device)
    cuda = [device.index if device.index is not None else torch.cuda.current_device()
            ] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        yield


def defended(cfg: TargetConfig, target: Target, num_train_classes: int) -> nn.Module:
    """:func:`build_objective`, wrapped by ``cfg``'s defense (if any) for ``target``."""
    return defended_objective(cfg.defense, cfg.defense_config,
                              build_objective(cfg, num_train_classes), target, num_train_classes)


def build_objective(cfg: TargetConfig, num_train_classes: int) -> Objective:
    """The loss ``cfg.loss`` names, over ``num_train_classes`` training identities."""
    if cfg.loss == "softmax":
        return SoftmaxObjective(cfg.label_smoothing)
    if cfg.loss == "triplet":
        return TripletObjective(cfg.resolved_margin)
    head_type = ArcFaceHead if cfg.loss == "arcface" else CosFaceHead
    with seeded(cfg.seed, "cpu"):
        head = head_type(cfg.feature_dim, num_train_classes, scale=cfg.scale,
                         margin=cfg.resolved_margin)
    return MarginObjective(head)


def augment(images: Tensor, generator: torch.Generator) -> Tensor:
    """Light augmentation of [0,1] images: horizontal flip, up to 10 % zoom and 6 % shift,
    ±10 % brightness (randomness drawn from ``generator`` on the CPU)."""
    n = images.shape[0]
    device = images.device
    flip = to_device(torch.rand(n, generator=generator) < 0.5, device)
    images = torch.where(flip.view(-1, 1, 1, 1), images.flip(-1), images)
    theta = torch.zeros(n, 2, 3)
    zoom = 1.0 - 0.1 * torch.rand(n, generator=generator)
    theta[:, 0, 0] = zoom
    theta[:, 1, 1] = zoom
    theta[:, :, 2] = (2.0 * torch.rand(n, 2, generator=generator) - 1.0) * 0.06
    grid = F.affine_grid(to_device(theta, device), list(images.shape), align_corners=False)
    images = F.grid_sample(images, grid, padding_mode="border", align_corners=False)
    brightness = 1.0 + (2.0 * torch.rand(n, generator=generator) - 1.0) * 0.1
    return (images * to_device(brightness, device).view(-1, 1, 1, 1)).clamp(0.0, 1.0)


def shuffled_batches(n: int, batch_size: int, generator: torch.Generator) -> list[Tensor]:
    """One epoch of random batches; a last batch smaller than half a batch is dropped."""
    order = torch.randperm(n, generator=generator)
    batches = list(order.split(batch_size))
    if len(batches) > 1 and len(batches[-1]) < batch_size // 2:
        batches.pop()
    return batches


def identity_batches(labels: Tensor, batch_size: int, per_identity: int,
                     generator: torch.Generator) -> list[Tensor]:
    """One epoch of P×K batches (P = batch_size // K identities, K images each, drawn with
    replacement when an identity has fewer), as batch-hard triplet mining needs."""
    classes = torch.unique(labels)
    members = [torch.nonzero(labels == c).flatten() for c in classes.tolist()]
    per_batch = max(2, min(len(classes), batch_size // per_identity))
    batches = []
    for _ in range(max(1, len(labels) // (per_batch * per_identity))):
        chosen = torch.randperm(len(classes), generator=generator)[:per_batch]
        picks = []
        for c in chosen.tolist():
            pool = members[c]
            if len(pool) >= per_identity:
                picks.append(pool[torch.randperm(len(pool), generator=generator)[:per_identity]])
            else:
                picks.append(pool[torch.randint(len(pool), (per_identity,), generator=generator)])
        batches.append(torch.cat(picks))
    return batches


def fit(target: Target, objective: nn.Module, split: Split, cfg: TargetConfig, *,
        device: str | torch.device = "cpu", progress: bool = True) -> tuple[int, float]:
    """Train ``target`` (and the objective's parameters) on ``split`` in place.

    Forward passes run under the run's autocast and steps go through its loss scaler
    (:mod:`mibench.precision`); the loss is summed on the device and read once per epoch (no
    per-step host sync), so a diverged loss is reported at the end of its epoch.
    Returns (optimiser steps, mean loss of the last epoch).
    """
    device = torch.device(device)
    generator = torch.Generator().manual_seed(cfg.seed)
    target.to(device).train()
    if channels_last(device):
        target.to(memory_format=torch.channels_last)
    objective.to(device).train()
    params = [p for p in (*target.parameters(), *objective.parameters()) if p.requires_grad]
    optimiser = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                                weight_decay=cfg.weight_decay)
    scaler = precision.LossScaler(device)
    triplet = cfg.loss == "triplet"

    def epoch_batches(rng: torch.Generator) -> list[Tensor]:
        if triplet:
            return identity_batches(split.labels, cfg.batch_size, cfg.images_per_identity, rng)
        return shuffled_batches(len(split), cfg.batch_size, rng)

    def load(index: Tensor) -> tuple[Tensor, Tensor]:
        return split.float_images(index), split.labels[index]

    per_epoch = len(epoch_batches(torch.Generator().manual_seed(cfg.seed)))
    total, warmup = cfg.epochs * per_epoch, min(cfg.warmup_epochs, cfg.epochs - 1) * per_epoch

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / (total - warmup)))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, factor)
    if isinstance(objective, DefenseObjective):
        objective.start(total)
    step, last_epoch_loss = 0, float("nan")
    with seeded(cfg.seed, device), tqdm(total=total, disable=not progress,
                                        desc=f"train {cfg.arch}", leave=False) as bar:
        for epoch in range(cfg.epochs):
            loss_sum = torch.zeros((), dtype=torch.float64, device=device)
            batches = epoch_batches(generator)
            for images, labels in device_batches(load, batches, device):
                if cfg.augment:
                    images = augment(images, generator)
                with precision.autocast(device):
                    loss = objective(target, images, labels)
                optimiser.zero_grad(set_to_none=True)
                scaler.step(loss, optimiser, max_grad_norm=GRAD_CLIP)
                schedule.step()
                step += 1
                loss_sum += loss.detach().double()
                bar.update(1)
            last_epoch_loss = loss_sum.item() / len(batches)
            if not math.isfinite(last_epoch_loss):
                raise TargetError(f"training diverged in epoch {epoch + 1} (mean loss "
                                  f"{last_epoch_loss}); lower lr")
            bar.set_postfix(loss=f"{last_epoch_loss:.3f}")
    target.eval()
    objective.eval()
    return step, last_epoch_loss


@torch.no_grad()
def accuracy(target: Target, split: Split, batch_size: int = EVAL_BATCH) -> float:
    """Top-1 accuracy of ``target``'s logits on ``split`` (eval mode, the run's autocast),
    counted on the device and read once."""
    target.eval()
    device = next(target.parameters()).device
    correct = torch.zeros((), dtype=torch.long, device=device)
    for x, y in split.batches(batch_size):
        with precision.autocast(device):
            logits = target(x.to(device))[0]
        correct += (logits.argmax(1) == y.to(device)).sum()
    return int(correct) / max(1, len(split))


def template_accuracy(target: Target, split: Split) -> float:
    """Top-1 of nearest class-mean template on ``split`` itself (an embedding's train accuracy)."""
    features = F.normalize(embed_split(target, split, EVAL_BATCH), dim=1)
    templates = class_templates(features, split.labels, split.num_classes)
    return float((features @ templates.t()).argmax(1).eq(split.labels).float().mean())


def identity_labelled(split: Split) -> Split:
    """The labelled images of ``split`` with labels renumbered 0..K-1 (for open-set training)."""
    keep = split.labels != UNLABELLED
    if int(keep.sum()) < 2:
        raise TargetError(f"split {split.name} has no identity labels; open-set targets train "
                          "on a labelled public split")
    _, labels = torch.unique(split.labels[keep], return_inverse=True)
    return Split(name=split.name, images=split.images[keep], labels=labels,
                 identities=split.identities[keep], meta=dict(split.meta))


def train_target(cfg: TargetConfig, *, train: Split, val: Split | None = None,
                 gallery: Split | None = None, device: str | torch.device = "cpu",
                 progress: bool = True) -> tuple[Target, TrainMetrics]:
    """Build and train the target of ``cfg``.

    Closed-set: ``train`` is private-train (its classes are the target's). Open-set: ``train``
    is the public split and ``gallery`` (private-train) is enrolled afterwards. ``val``
    (private-test) gives ``val_accuracy`` over the private identities in both cases.
    """
    started, cpu_started = time.perf_counter(), time.process_time()
    if cfg.kind == "closed":
        target = build_target(cfg, train.num_classes)
        steps, loss = fit(target, defended(cfg, target, train.num_classes), train, cfg,
                          device=device, progress=progress)
        train_acc = accuracy(target, train)
    else:
        if gallery is None:
            raise TargetError("an open-set target needs a gallery split (private-train) to "
                              "enrol; pass gallery=")
        public = identity_labelled(train)
        target = build_target(cfg, gallery.num_classes)
        steps, loss = fit(target, defended(cfg, target, public.num_classes), public, cfg,
                          device=device, progress=progress)
        train_acc = template_accuracy(target, public)
        if not isinstance(target, OpenSetModel):
            raise TypeError(f"open-set config built a {type(target).__name__}")
        target.enrol_from_split(gallery)
    val_acc = accuracy(target, val) if val is not None else None
    return target, TrainMetrics(train_accuracy=train_acc, val_accuracy=val_acc, final_loss=loss,
                                steps=steps, wall_time_s=time.perf_counter() - started,
                                cpu_time_s=time.process_time() - cpu_started)
