"""A faithful re-implementation of KEDMI's evaluation model, written for the tests only.

Layout of ``SCccc21/Knowledge-Enriched-DMI: models/facenet.py`` (``FaceNet``) over
``models/evolve.py`` (``IR_50_112``, face.evoLVe's ``Backbone`` in ``ir`` mode): ``feature`` =
``input_layer`` (conv3×3 → BN → PReLU), ``output_layer`` (BN2d → Dropout → Flatten → Linear →
BN1d) and ``body`` (the ``bottleneck_IR`` units of all four stages in one ``Sequential``), then
``fc_layer``. Modules are registered in the published order; ``widths``, ``side`` and
``embedding`` default to the published IR-50 at 112 px and shrink it for fast tests. The
released ``FaceNet_95.88.tar`` is ``{"state_dict": …}`` of the model in ``nn.DataParallel``.
"""

from __future__ import annotations

from collections import namedtuple

import torch
from torch import nn

Unit = namedtuple("Unit", ["in_channel", "depth", "stride"])
IR50_UNITS = (3, 4, 14, 3)


class Flatten(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(x.size(0), -1)


class BottleneckIR(nn.Module):
    def __init__(self, in_channel: int, depth: int, stride: int) -> None:
        super().__init__()
        if in_channel == depth:
            self.shortcut_layer: nn.Module = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(
                nn.Conv2d(in_channel, depth, (1, 1), stride, bias=False), nn.BatchNorm2d(depth))
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(in_channel),
            nn.Conv2d(in_channel, depth, (3, 3), (1, 1), 1, bias=False),
            nn.PReLU(depth), nn.Conv2d(depth, depth, (3, 3), stride, 1, bias=False),
            nn.BatchNorm2d(depth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


def units(widths: tuple[int, int, int, int]) -> list[Unit]:
    """face.evoLVe ``get_blocks(50)``: per stage one stride-2 unit, then stride-1 units."""
    out, in_channel = [], widths[0]
    for count, depth in zip(IR50_UNITS, widths):
        out += [Unit(in_channel, depth, 2)] + [Unit(depth, depth, 1)] * (count - 1)
        in_channel = depth
    return out


class EvolveBackbone(nn.Module):
    def __init__(self, widths: tuple[int, int, int, int], side: int, embedding: int) -> None:
        super().__init__()
        self.input_layer = nn.Sequential(nn.Conv2d(3, widths[0], (3, 3), 1, 1, bias=False),
                                         nn.BatchNorm2d(widths[0]), nn.PReLU(widths[0]))
        last = widths[-1]
        self.output_layer = nn.Sequential(nn.BatchNorm2d(last), nn.Dropout(), Flatten(),
                                          nn.Linear(last * (side // 16) ** 2, embedding),
                                          nn.BatchNorm1d(embedding))
        self.body = nn.Sequential(*[BottleneckIR(*unit) for unit in units(widths)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output_layer(self.body(self.input_layer(x)))


class FaceNet(nn.Module):
    """KEDMI's ``FaceNet(num_classes)``: forward returns ``[feature, logits]``."""

    def __init__(self, num_classes: int = 1000,
                 widths: tuple[int, int, int, int] = (64, 128, 256, 512), side: int = 112,
                 embedding: int = 512) -> None:
        super().__init__()
        self.feature = EvolveBackbone(widths, side, embedding)
        self.feat_dim = embedding
        self.num_classes = num_classes
        self.fc_layer = nn.Linear(self.feat_dim, self.num_classes)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feat = self.feature(x)
        feat = feat.view(feat.size(0), -1)
        return [feat, self.fc_layer(feat)]


def released_checkpoint(model: FaceNet) -> dict[str, dict[str, torch.Tensor]]:
    """What KEDMI saved: the ``nn.DataParallel`` state dict under ``state_dict``."""
    return {"state_dict": nn.DataParallel(model).state_dict()}
