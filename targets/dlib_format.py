"""A reader for dlib's serialized DNN files (``dlib_face_recognition_resnet_model_v1.dat``).

Format notes (assets.md §4; dlib's ``serialize.h`` and the layers' ``serialize()`` are the only
spec). Integers are *compact*: one byte holding the byte count (``| 0x80`` if negative), then
that many little-endian bytes of the magnitude. Strings are a compact length plus the bytes.
Scalar floats are a compact mantissa and a compact exponent (value = mantissa · 2^exponent). A
tensor is ``int 2`` (version), ``num_samples, k, nr, nc``, then raw little-endian float32.

A network is written input layer first. We read the layers whose weights we need, found by their
serialized names, in file order:

* ``input_rgb_image_sized``: the per-channel means (three floats), then the input side (twice);
* ``con_4``: params (filters of ``num_filters × in × nr × nc`` followed by one bias per filter),
  then ``num_filters, nr, nc, stride_y, stride_x, padding_y, padding_x``;
* ``affine_``: params (gamma of every channel, then beta);
* ``fc_2``: ``num_outputs, num_inputs``, then params (``num_inputs × num_outputs``, no bias).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from mibench.targets.errors import CheckpointError

TENSOR_VERSION = 2


@dataclass(frozen=True)
class DlibConv:
    """One ``con_`` layer: weight (out × in × nr × nc), bias (out), stride and padding."""

    weight: torch.Tensor
    bias: torch.Tensor
    stride: int
    padding: int


@dataclass
class DlibNet:
    """The weights of a dlib network, layer by layer in forward order."""

    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    input_size: int = 0
    convs: list[DlibConv] = field(default_factory=list)
    affines: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)
    fc: torch.Tensor | None = None

    def num_parameters(self) -> int:
        convs = sum(c.weight.numel() + c.bias.numel() for c in self.convs)
        affines = sum(g.numel() + b.numel() for g, b in self.affines)
        return convs + affines + (0 if self.fc is None else self.fc.numel())


class _Reader:
    """Sequential reader of dlib's serialization primitives over a bytes buffer."""

    def __init__(self, data: bytes, pos: int, source: str) -> None:
        self.data, self.pos, self.source = data, pos, source

    def _take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise CheckpointError(f"{self.source} ends inside a value (offset {self.pos}); the "
                                  "file is truncated: reinstall the package that ships it")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def int(self) -> int:
        head = self._take(1)[0]
        size, negative = head & 0x7F, bool(head & 0x80)
        if size > 8:
            raise CheckpointError(f"{self.source}: bad integer at offset {self.pos - 1}; "
                                  "not a dlib network file")
        value = int.from_bytes(self._take(size), "little")
        return -value if negative else value

    def float(self) -> float:
        mantissa = self.int()
        return math.ldexp(float(mantissa), self.int())

    def tensor(self) -> torch.Tensor:
        version = self.int()
        if version != TENSOR_VERSION:
            raise CheckpointError(f"{self.source}: tensor version {version} at offset "
                                  f"{self.pos}, expected {TENSOR_VERSION}")
        shape = [self.int() for _ in range(4)]
        count = int(np.prod(shape))
        values = np.frombuffer(self._take(4 * count), dtype="<f4")
        return torch.from_numpy(values.copy()).reshape(shape)


def _marker(name: str) -> bytes:
    """The serialized form of the string ``name`` (compact length, then the characters)."""
    return bytes([1, len(name)]) + name.encode("ascii")


LAYERS = ("input_rgb_image_sized", "con_4", "affine_", "fc_2")
_PATTERN = re.compile(b"|".join(re.escape(_marker(name)) for name in LAYERS))


def read_dlib_net(path: str | Path) -> DlibNet:
    """Parse the weights of a dlib DNN file (input layer, convolutions, affines, fc)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise CheckpointError(f"cannot read {path} ({err.strerror}); reinstall the package "
                              "that ships it") from err
    net = DlibNet()
    for match in _PATTERN.finditer(data):
        name = match.group()[2:].decode("ascii")
        reader = _Reader(data, match.end(), str(path))
        if name == "input_rgb_image_sized":
            net.mean = (reader.float(), reader.float(), reader.float())
            net.input_size = reader.int()
        elif name == "con_4":
            params = reader.tensor().flatten()
            out, nr, nc, stride, _, padding, _ = (reader.int() for _ in range(7))
            in_channels = (params.numel() - out) // (out * nr * nc)
            if in_channels * out * nr * nc + out != params.numel():
                raise CheckpointError(f"{path}: convolution {len(net.convs)} has "
                                      f"{params.numel()} params, not filters + biases")
            split = in_channels * out * nr * nc
            net.convs.append(DlibConv(params[:split].reshape(out, in_channels, nr, nc),
                                      params[split:].clone(), stride, padding))
        elif name == "affine_":
            params = reader.tensor().flatten()
            half = params.numel() // 2
            net.affines.append((params[:half].clone(), params[half:].clone()))
        else:
            outputs, inputs = reader.int(), reader.int()
            net.fc = reader.tensor().reshape(inputs, outputs)
    if not net.convs or net.fc is None or net.input_size == 0:
        raise CheckpointError(f"{path} holds no dlib network (no input layer, convolutions or "
                              "fc layer found); pass dlib_face_recognition_resnet_model_v1.dat")
    return net
