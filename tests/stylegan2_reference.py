"""A faithful re-implementation of NVLabs' stylegan2-ada-pytorch generator layout, for tests.

Module tree, parameter/buffer names and shapes follow ``training/networks.py``
(``Generator`` → ``mapping.fc{i}``, ``mapping.w_avg``, ``synthesis.b{res}.{const, conv0, conv1,
torgb}``, layers with ``affine``, ``weight``, ``bias``, ``noise_const``, ``noise_strength``,
``resample_filter``); pickling follows ``torch_utils/persistence.py`` (each module reduces to
``_reconstruct_persistent_obj(meta)`` with its source code and ``__dict__``). The forward
passes are the StyleGAN2 equations written independently of ``mibench``: fused
modulation/demodulation (per-sample weights, grouped convolution) and ``upfirdn2d`` by zero
insertion, padding and the flipped filter.
"""

from __future__ import annotations

import math
import sys
import types

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

FILTER = torch.tensor([1.0, 3.0, 3.0, 1.0])


def setup_filter() -> torch.Tensor:
    f = FILTER[:, None] * FILTER[None, :]
    return f / f.sum()


def upfirdn2d(x: torch.Tensor, f: torch.Tensor, up: int = 1,
              pad: tuple[int, int, int, int] = (0, 0, 0, 0), gain: float = 1.0) -> torch.Tensor:
    """Upsample (zero insertion), pad (x0, x1, y0, y1), convolve with f · gain (2-D f)."""
    n, c, h, w = x.shape
    x = x.reshape(n, c, h, 1, w, 1)
    x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1]).reshape(n, c, h * up, w * up)
    x = F.pad(x, [pad[0], pad[1], pad[2], pad[3]])
    kernel = (f * gain).flip([0, 1])[None, None].repeat(c, 1, 1, 1)
    return F.conv2d(x, kernel, groups=c)


class EasyDict(dict):
    """``dnnlib.util.EasyDict``."""


EasyDict.__module__ = "dnnlib.util"


def _reconstruct_persistent_obj(meta):   # NVLabs' loader would import meta["module_src"]
    raise AssertionError("mibench must never call the pickle's reconstruct function")


_reconstruct_persistent_obj.__module__ = "torch_utils.persistence"


def install_fake_modules(monkeypatch) -> None:
    """Make ``torch_utils.persistence`` and ``dnnlib.util`` resolvable so pickle can *write*
    references to them (reading goes through mibench's restricted unpickler only)."""
    for name, attrs in {"torch_utils": {}, "dnnlib": {},
                        "torch_utils.persistence": {"_reconstruct_persistent_obj":
                                                    _reconstruct_persistent_obj},
                        "dnnlib.util": {"EasyDict": EasyDict}}.items():
        module = types.ModuleType(name)
        for key, value in attrs.items():
            setattr(module, key, value)
        monkeypatch.setitem(sys.modules, name, module)


class Persistent(nn.Module):
    """``persistence.persistent_class``: pickled with its source code and ``__dict__``."""

    module_src = ""

    def __init__(self, **kwargs) -> None:
        super().__init__()
        self._init_args, self._init_kwargs = (), EasyDict(kwargs)

    def __reduce__(self):
        meta = dict(type="class", version=6, module_src=Persistent.module_src,
                    class_name=type(self).__name__, state=dict(self.__dict__))
        return _reconstruct_persistent_obj, (meta,)


class FullyConnectedLayer(Persistent):
    def __init__(self, c_in, c_out, bias_init=0.0, lr_multiplier=1.0, activation="linear"):
        super().__init__(in_features=c_in, out_features=c_out)
        self.activation = activation
        self.weight = nn.Parameter(torch.randn(c_out, c_in) / lr_multiplier)
        self.bias = nn.Parameter(torch.full((c_out,), float(bias_init)))
        self.weight_gain, self.bias_gain = lr_multiplier / np.sqrt(c_in), lr_multiplier

    def forward(self, x):
        x = x.matmul((self.weight * self.weight_gain).t()) + self.bias * self.bias_gain
        return F.leaky_relu(x, 0.2) * math.sqrt(2) if self.activation == "lrelu" else x


class MappingNetwork(Persistent):
    def __init__(self, z_dim, w_dim, num_ws, num_layers):
        super().__init__(z_dim=z_dim, c_dim=0, w_dim=w_dim, num_ws=num_ws)
        self.z_dim, self.c_dim, self.w_dim, self.num_ws, self.num_layers = (
            z_dim, 0, w_dim, num_ws, num_layers)
        features = [z_dim] + [w_dim] * num_layers
        for i in range(num_layers):
            setattr(self, f"fc{i}", FullyConnectedLayer(features[i], features[i + 1],
                                                        lr_multiplier=0.01, activation="lrelu"))
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(self, z, psi=1.0, cutoff=None):
        x = z * (z.square().mean(dim=1, keepdim=True) + 1e-8).rsqrt()
        for i in range(self.num_layers):
            x = getattr(self, f"fc{i}")(x)
        x = x.unsqueeze(1).repeat(1, self.num_ws, 1)
        if psi != 1:
            x[:, :cutoff] = self.w_avg.lerp(x[:, :cutoff], psi)
        return x


def modulated_conv(x, weight, styles, demodulate, up=1):
    """Fused modulated convolution (one group per sample), transposed when up = 2."""
    n, c_in, h, w = x.shape
    c_out, _, k, _ = weight.shape
    wts = weight[None] * styles[:, None, :, None, None]
    if demodulate:
        wts = wts * (wts.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()[:, :, None, None, None]
    x = x.reshape(1, n * c_in, h, w)
    if up == 1:
        x = F.conv2d(x, wts.reshape(n * c_out, c_in, k, k), padding=k // 2, groups=n)
    else:
        wts = wts.transpose(1, 2).reshape(n * c_in, c_out, k, k)
        x = F.conv_transpose2d(x, wts, stride=2, groups=n)
        x = upfirdn2d(x, setup_filter(), pad=(1, 1, 1, 1), gain=4)
    return x.reshape(n, c_out, *x.shape[2:])


class SynthesisLayer(Persistent):
    def __init__(self, c_in, c_out, w_dim, resolution, up=1, conv_clamp=None):
        super().__init__(in_channels=c_in, out_channels=c_out, resolution=resolution)
        self.resolution, self.up, self.use_noise, self.activation = resolution, up, True, "lrelu"
        self.conv_clamp, self.padding, self.act_gain = conv_clamp, 1, np.sqrt(2)  # np.float64
        self.register_buffer("resample_filter", setup_filter())
        self.affine = FullyConnectedLayer(w_dim, c_in, bias_init=1)
        self.weight = nn.Parameter(torch.randn(c_out, c_in, 3, 3))
        self.register_buffer("noise_const", torch.randn(resolution, resolution))
        self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros(c_out))

    def forward(self, x, w):
        x = modulated_conv(x, self.weight, self.affine(w), True, self.up)
        x = x + self.noise_const * self.noise_strength
        x = F.leaky_relu(x + self.bias[None, :, None, None], 0.2) * self.act_gain
        return x if self.conv_clamp is None else x.clamp(-self.conv_clamp, self.conv_clamp)


class ToRGBLayer(Persistent):
    def __init__(self, c_in, c_out, w_dim, conv_clamp=None):
        super().__init__(in_channels=c_in, out_channels=c_out)
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, c_in, bias_init=1)
        self.weight = nn.Parameter(torch.randn(c_out, c_in, 1, 1))
        self.bias = nn.Parameter(torch.zeros(c_out))
        self.weight_gain = 1 / np.sqrt(c_in)

    def forward(self, x, w):
        x = modulated_conv(x, self.weight, self.affine(w) * self.weight_gain, False)
        x = x + self.bias[None, :, None, None]
        return x if self.conv_clamp is None else x.clamp(-self.conv_clamp, self.conv_clamp)


class SynthesisBlock(Persistent):
    def __init__(self, c_in, c_out, w_dim, resolution, conv_clamp=None):
        super().__init__(in_channels=c_in, out_channels=c_out, resolution=resolution)
        self.in_channels, self.resolution, self.architecture = c_in, resolution, "skip"
        self.register_buffer("resample_filter", setup_filter())
        if c_in == 0:
            self.const = nn.Parameter(torch.randn(c_out, resolution, resolution))
        else:
            self.conv0 = SynthesisLayer(c_in, c_out, w_dim, resolution, up=2,
                                        conv_clamp=conv_clamp)
        self.conv1 = SynthesisLayer(c_out, c_out, w_dim, resolution, conv_clamp=conv_clamp)
        self.torgb = ToRGBLayer(c_out, 3, w_dim, conv_clamp=conv_clamp)
        self.num_conv, self.num_torgb = (1 if c_in == 0 else 2), 1

    def forward(self, x, img, ws):
        styles = iter(ws.unbind(dim=1))
        if self.in_channels == 0:
            x = self.conv1(self.const[None].repeat(len(ws), 1, 1, 1), next(styles))
        else:
            x = self.conv1(self.conv0(x, next(styles)), next(styles))
        if img is not None:
            img = upfirdn2d(img, self.resample_filter, up=2, pad=(2, 1, 2, 1), gain=4)
        y = self.torgb(x, next(styles))
        return x, y if img is None else img + y


class SynthesisNetwork(Persistent):
    def __init__(self, w_dim, img_resolution, channel_base, channel_max, conv_clamp=None):
        super().__init__(w_dim=w_dim, img_resolution=img_resolution)
        self.resolutions = [2 ** i for i in range(2, int(math.log2(img_resolution)) + 1)]
        width = {r: min(channel_base // r, channel_max) for r in self.resolutions}
        self.num_ws = 0
        for r in self.resolutions:
            block = SynthesisBlock(width[r // 2] if r > 4 else 0, width[r], w_dim, r,
                                   conv_clamp=conv_clamp)
            self.num_ws += block.num_conv + (block.num_torgb if r == img_resolution else 0)
            setattr(self, f"b{r}", block)

    def forward(self, ws):
        x = img = None
        index = 0
        for r in self.resolutions:
            block = getattr(self, f"b{r}")
            x, img = block(x, img, ws[:, index:index + block.num_conv + block.num_torgb])
            index += block.num_conv
        return img


class Generator(Persistent):
    def __init__(self, z_dim=8, w_dim=8, img_resolution=16, mapping_layers=2,
                 channel_base=128, channel_max=16, conv_clamp=None):
        super().__init__(z_dim=z_dim, c_dim=0, w_dim=w_dim, img_resolution=img_resolution,
                         img_channels=3, mapping_kwargs=EasyDict(num_layers=mapping_layers),
                         synthesis_kwargs=EasyDict(channel_base=channel_base,
                                                   channel_max=channel_max,
                                                   conv_clamp=conv_clamp))
        self.z_dim, self.c_dim, self.w_dim, self.img_resolution = z_dim, 0, w_dim, img_resolution
        self.synthesis = SynthesisNetwork(w_dim, img_resolution, channel_base, channel_max,
                                          conv_clamp)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim, w_dim, self.num_ws, mapping_layers)

    def randomise(self, seed: int) -> "Generator":
        """Non-trivial biases, noise strengths and w_avg, so the mapping of each is tested."""
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for name, tensor in list(self.named_parameters()) + list(self.named_buffers()):
                if name.endswith(("bias", "noise_strength", "w_avg")):
                    tensor.add_(torch.randn(tensor.shape, generator=gen) * 0.3)
        return self.eval().requires_grad_(False)
