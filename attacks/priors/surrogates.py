"""LOMMA's model augmentation (Nguyen et al., CVPR 2023, §4.2; public code
sutd-visual-computing-group/Re-thinking_MI ``engine.py``, ``train_augmodel``): surrogate
classifiers distilled from the target on the aux split.

Each surrogate learns the target's answers by knowledge distillation: KL(softmax(t/τ) ‖
softmax(s/τ)) · τ² summed over the batch and divided by its size, SGD (lr 0.01, momentum 0.9,
weight decay 1e-4), 20 epochs, batch 64, τ = 1 (``config/celeba/training_augmodel``). The
teacher's logits of the aux images are queried once (they do not change between epochs: the
public code applies no augmentation), so distillation costs one forward query per aux image.

Architectures: the paper's EfficientNet-B0/B1/B2 (torchvision, randomly initialised: no
ImageNet weights are available offline), or ``cnn-<d>``, a small convolutional network of ``d``
stages that the CPU presets use (ours).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from mibench import precision
from mibench.attack import AttackContext
from mibench.attacks.latent import show_losses
from mibench.errors import ConfigError

EFFICIENTNETS = ("efficientnet_b0", "efficientnet_b1", "efficientnet_b2")


class SmallCNN(nn.Module):
    """``stages`` × [3×3 conv, BatchNorm, ReLU, 2×2 max-pool], channels 32·width doubling up to
    8×, then global average pooling and a linear head (ours, for the CPU presets)."""

    def __init__(self, num_classes: int, stages: int, width: float = 1.0) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for i in range(stages):
            c_out = max(8, int(32 * width * 2 ** min(i, 3)))
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                       nn.ReLU(), nn.MaxPool2d(2)]
            c_in = c_out
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x * 2 - 1))


class _Normalised(nn.Module):
    """A torchvision classifier on [0, 1] images with ImageNet normalisation."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)


def make_surrogate(name: str, num_classes: int, width: float = 1.0) -> nn.Module:
    """A surrogate classifier by name: ``efficientnet_b0|b1|b2`` or ``cnn-<stages>``."""
    if name in EFFICIENTNETS:
        return _Normalised(getattr(torchvision.models, name)(weights=None,
                                                             num_classes=num_classes))
    stages = name.removeprefix("cnn-")
    if name.startswith("cnn-") and stages.isdigit() and 1 <= int(stages) <= 8:
        return SmallCNN(num_classes, int(stages), width)
    raise ConfigError(f"unknown LOMMA surrogate {name!r}; use one of {', '.join(EFFICIENTNETS)} "
                      f"or cnn-<stages> (1–8)")


def distil(student: nn.Module, images: torch.Tensor, teacher_logits: torch.Tensor,
           ctx: AttackContext, *, epochs: float, batch_size: int, lr: float, momentum: float,
           weight_decay: float, temperature: float, seed_offset: int = 0) -> None:
    """Distil ``teacher_logits`` of the uint8 ``images`` into ``student`` (``train_augmodel``)."""
    gen = ctx.generator(7919 + seed_offset)
    student.train()
    optimiser = torch.optim.SGD(student.parameters(), lr=lr, momentum=momentum,
                                weight_decay=weight_decay)
    scaler = precision.LossScaler(ctx.device)
    teacher = F.softmax(teacher_logits.to(ctx.device).float() / temperature, dim=1)
    steps = max(1, math.ceil(epochs * len(images) / batch_size))
    bar = ctx.progress(range(steps), desc="LOMMA surrogate", unit="step")
    for step in bar:
        index = torch.randint(len(images), (batch_size,), device=ctx.device, generator=gen)
        with precision.autocast(ctx.device):
            logits = student(images[index].float().div_(255))
            loss = F.kl_div(F.log_softmax(logits.float() / temperature, dim=1), teacher[index],
                            reduction="sum") / batch_size
        optimiser.zero_grad(set_to_none=True)
        scaler.step(loss * temperature ** 2, optimiser)
        show_losses(bar, step, kd=loss)
    student.eval()


@torch.no_grad()
def agreement(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
              batch_size: int = 256) -> float:
    """Fraction of uint8 ``images`` on which ``model``'s top-1 class equals ``labels``."""
    hits = 0
    for start in range(0, len(images), batch_size):
        batch = images[start:start + batch_size].float().div(255)
        hits += int((model(batch).argmax(1).cpu() == labels[start:start + batch_size]).sum())
    return hits / max(1, len(images))
