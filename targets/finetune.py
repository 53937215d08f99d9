"""Fine-tuning an open-set target on the private data (paper Table III: ArcFace/CosFace-18,
fine-tuned 4 successive times).

The paper gives no recipe; ours, one round: start from the previous model's weights; train its
own margin loss (ArcFace or CosFace, same s and m) over the *private* identities on
private-train, with the margin head's class centres initialised to the model's current gallery
templates (so the round starts from what the model already knows instead of a random head);
SGD at ``FINE_TUNE_LR_FACTOR`` × the pre-training lr with cosine decay, the pre-training
momentum, weight decay, batch size and augmentation; then re-enrol the gallery from
private-train. Each round therefore fits the private identities more tightly, the drift towards
the private data that the paper's Table III measures.
"""

from __future__ import annotations

import copy
import time

import torch
import torch.nn.functional as F

from mibench.target import Target
from mibench.targets.config import TargetConfig
from mibench.targets.errors import TargetError
from mibench.targets.models import OpenSetModel, embed_split
from mibench.targets.train import MarginObjective, TrainMetrics, accuracy, build_objective, fit
from mibench.world import Split

FINE_TUNE_LR_FACTOR = 0.1


def fine_tune(parent: Target, cfg: TargetConfig, *, train: Split, val: Split | None = None,
              device: str | torch.device = "cpu",
              progress: bool = True) -> tuple[OpenSetModel, TrainMetrics]:
    """One fine-tuning round of ``parent`` on ``train`` (private-train); ``parent`` is untouched.

    ``cfg`` is the round's config: the parent's architecture with the round's schedule
    (``epochs``, ``lr``, ``seed``). ``train_accuracy`` is gallery identification on ``train``.
    """
    if not isinstance(parent, OpenSetModel):
        raise TargetError(f"only open-set targets are fine-tuned, got a {parent.kind}-set one")
    if train.num_classes != parent.num_classes:
        raise TargetError(f"split {train.name} has {train.num_classes} identities but the "
                          f"target has {parent.num_classes}; fine-tune on private-train")
    started, cpu_started = time.perf_counter(), time.process_time()
    target = copy.deepcopy(parent).cpu()
    objective = build_objective(cfg, train.num_classes)
    if not isinstance(objective, MarginObjective):
        raise TargetError(f"fine-tuning trains a margin loss (arcface / cosface), not {cfg.loss}")
    with torch.no_grad():
        objective.head.weight.copy_(target.gallery)
    steps, loss = fit(target, objective, train, cfg, device=device, progress=progress)
    target.enrol_from_split(train)
    val_acc = accuracy(target, val) if val is not None else None
    return target, TrainMetrics(train_accuracy=accuracy(target, train), val_accuracy=val_acc,
                                final_loss=loss, steps=steps,
                                wall_time_s=time.perf_counter() - started,
                                cpu_time_s=time.process_time() - cpu_started)


def gallery_margin(target: OpenSetModel, split: Split) -> float:
    """How tightly ``split`` (private-train) fits the gallery: the mean over its images of the
    cosine to the own identity's template minus the highest cosine to another identity's
    (> 0 where identified correctly; it grows as the identities separate further)."""
    cosines = F.normalize(embed_split(target, split), dim=1) @ target.gallery.detach().cpu().t()
    rows = torch.arange(len(split))
    own = cosines[rows, split.labels]
    cosines[rows, split.labels] = -2.0  # below every cosine
    return float((own - cosines.max(1).values).mean())
