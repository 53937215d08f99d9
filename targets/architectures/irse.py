"""IR-50/100/152 from face.evoLVe, in the layouts the model-inversion literature releases.

Follows ``ZhaoJ9014/face.evoLVe: backbone/model_irse.py`` (IR = ResNet with improved residual
units, Deng et al. ArcFace §3 / Han et al.): a 3×3 stem (``input_layer``), then bottleneck_IR
units ``body.i`` (``res_layer``: BN → conv → PReLU → conv(stride) → BN; ``shortcut_layer``:
max-pool(1, stride) when the channels agree, else 1×1 conv + BN), then ``output_layer``: BN2d →
Dropout → Flatten → Linear → BatchNorm1d (the embedding) and the linear head ``fc_layer``.

Two wrappers, as released by KEDMI / PLG-MI / the MIA toolbox (anchors.md §1.1):

* ``kedmi`` — ``IR152`` and ``FaceNet64`` targets: ``feature.{input_layer,body}``, then
  ``output_layer`` *outside* ``feature``, then ``fc_layer``;
* ``evolve112`` — the ``FaceNet``/``FaceNet112`` evaluation model: ``output_layer`` *inside*
  (``feature.output_layer``), then ``fc_layer``.
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor, nn

from mibench.targets.architectures.base import Backbone, halved, scaled

Layout = Literal["kedmi", "evolve112"]
LAYOUTS: tuple[str, ...] = ("kedmi", "evolve112")
UNITS: dict[int, tuple[int, int, int, int]] = {
    50: (3, 4, 14, 3),
    100: (3, 13, 30, 3),
    152: (3, 8, 36, 3),
}
STAGE_CHANNELS = (64, 128, 256, 512)


class BottleneckIR(nn.Module):
    """face.evoLVe ``bottleneck_IR`` unit (the stride sits on the second conv); ``skip =
    False`` drops the shortcut (RoLSS)."""

    def __init__(self, in_channels: int, channels: int, stride: int) -> None:
        super().__init__()
        self.skip = True
        self.shortcut_layer: nn.Module
        if in_channels == channels:
            self.shortcut_layer = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(
                nn.Conv2d(in_channels, channels, 1, stride, bias=False), nn.BatchNorm2d(channels))
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(in_channels),
            nn.Conv2d(in_channels, channels, 3, 1, 1, bias=False),
            nn.PReLU(channels),
            nn.Conv2d(channels, channels, 3, stride, 1, bias=False),
            nn.BatchNorm2d(channels))

    def forward(self, x: Tensor) -> Tensor:
        out = self.res_layer(x)
        return out + self.shortcut_layer(x) if self.skip else out


def output_layer(channels: int, side: int, feature_dim: int) -> nn.Sequential:
    """BN2d → Dropout → Flatten → Linear → BN1d (indices 0, 3, 4 carry the weights)."""
    return nn.Sequential(nn.BatchNorm2d(channels), nn.Dropout(), nn.Flatten(),
                         nn.Linear(channels * side * side, feature_dim),
                         nn.BatchNorm1d(feature_dim))


class EvolveBody(nn.Module):
    """The face.evoLVe backbone's ``input_layer`` and ``body`` (and, for evolve112, its output)."""

    def __init__(self, depth: int, width: float) -> None:
        super().__init__()
        stem = scaled(STAGE_CHANNELS[0], width)
        self.input_layer = nn.Sequential(nn.Conv2d(3, stem, 3, 1, 1, bias=False),
                                         nn.BatchNorm2d(stem), nn.PReLU(stem))
        units: list[nn.Module] = []
        in_channels = stem
        for count, base in zip(UNITS[depth], STAGE_CHANNELS, strict=True):
            channels = scaled(base, width)
            units.append(BottleneckIR(in_channels, channels, 2))
            units += [BottleneckIR(channels, channels, 1) for _ in range(count - 1)]
            in_channels = channels
        self.body = nn.Sequential(*units)
        self.out_channels = in_channels
        self.output_layer: nn.Sequential | None = None

    def forward(self, x: Tensor) -> Tensor:
        x = self.body(self.input_layer(x))
        return x if self.output_layer is None else self.output_layer(x)


class IRSE(Backbone):
    """IR-``depth`` (50, 100, 152) in the KEDMI or evoLVe-112 wrapper layout."""

    head_key = "fc_layer"

    def __init__(self, depth: int, *, width: float = 1.0, resolution: int = 112,
                 feature_dim: int = 512, num_classes: int | None = None,
                 layout: Layout = "kedmi") -> None:
        super().__init__(feature_dim, num_classes)
        if depth not in UNITS:
            raise ValueError(f"IR depth must be one of {sorted(UNITS)}, got {depth}")
        if layout not in LAYOUTS:
            raise ValueError(f"IR layout must be one of {LAYOUTS}, got {layout!r}")
        self.feature = EvolveBody(depth, width)
        output = output_layer(self.feature.out_channels, halved(resolution, 4), feature_dim)
        self.output_layer: nn.Sequential | None = None
        if layout == "kedmi":
            self.output_layer = output
        else:
            self.feature.output_layer = output
        self._initialise()
        self.add_head()

    def _initialise(self) -> None:
        """Xavier-uniform convs and linears, as face.evoLVe's ``_initialize_weights``."""
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def embed(self, x: Tensor) -> Tensor:
        x = self.feature(x)
        return x if self.output_layer is None else self.output_layer(x)
