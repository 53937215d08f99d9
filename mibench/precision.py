"""Mixed precision and GPU back-end settings, in one place for every training, sampling and
metric loop (issue 17, "use the GPU well").

A run has one precision *policy* (``run.precision``):

- ``auto`` (default): bf16 autocast on CUDA where the GPU supports it, fp16 autocast with a
  gradient scaler on older CUDA GPUs, plain fp32 on the CPU (CPU autocast is slower than fp32 for
  the small ``mini`` networks, and the CPU presets' numbers stay those of fp32);
- ``fp32``: never autocast;
- ``bf16`` / ``fp16``: autocast to that type on any device (``bf16`` on the CPU is how the
  numerics of mixed precision are measured without a GPU).

:func:`configure` resolves the policy for the run's device once per process (the driver and
each worker); loops then call :func:`autocast` around forward passes and step their optimisers
through a :class:`LossScaler`. Models trained under reduced precision are different artefacts,
so :func:`key_tag` names the precision for cache keys of trained models (empty under fp32: the
keys of every CPU run stay as they were).

``run.compile`` (``off`` by default, or ``on``) wraps the diffusion UNets — the bulk of a
``paper`` run's GPU time (Diff-MI, UAMI and FGMIA train and sample them) — in ``torch.compile``
through :func:`compiled`, in training and in DDIM sampling. It is optional because compiling
costs minutes per new shape and pays only over long loops; ``benchmarks/compile_speed.py``
measures eager against compiled steps. Compiled modules share the parameters of the original,
so checkpoints and cache keys are unchanged.
"""

from __future__ import annotations

import weakref
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch
from torch import nn

from mibench.errors import ConfigError

POLICIES = ("auto", "fp32", "bf16", "fp16")
COMPILE = ("off", "on")
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Precision:
    """The resolved policy: the device type it applies to and the autocast dtype (``None`` =
    fp32)."""

    device_type: str = "cpu"
    dtype: torch.dtype | None = None

    @property
    def name(self) -> str:
        return next((k for k, v in DTYPES.items() if v == self.dtype), "fp32")


_ACTIVE = Precision()
_COMPILE = False
_COMPILED: "weakref.WeakKeyDictionary[nn.Module, nn.Module]" = weakref.WeakKeyDictionary()


def resolve(policy: str, device: torch.device) -> Precision:
    """The precision ``policy`` means on ``device``."""
    if policy not in POLICIES:
        raise ConfigError(f"unknown precision {policy!r}; choose one of {', '.join(POLICIES)}")
    if policy == "fp32" or (policy == "auto" and device.type != "cuda"):
        return Precision(device.type, None)
    if policy == "auto":
        supported = torch.cuda.is_bf16_supported()
        return Precision(device.type, torch.bfloat16 if supported else torch.float16)
    return Precision(device.type, DTYPES[policy])


def configure(policy: str, device: torch.device, compile: str = "off") -> Precision:
    """Make ``policy`` this process's precision for ``device``, ``compile`` its
    ``torch.compile`` setting, and tune the CUDA back-ends (cuDNN autotuning, TF32 matmuls);
    returns the resolved precision."""
    global _ACTIVE, _COMPILE
    if compile not in COMPILE:
        raise ConfigError(f"unknown compile setting {compile!r}; choose one of "
                          f"{', '.join(COMPILE)}")
    _ACTIVE, _COMPILE = resolve(policy, device), compile == "on"
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return _ACTIVE


def active() -> Precision:
    """This process's resolved precision (fp32 until :func:`configure` is called)."""
    return _ACTIVE


def autocast(device: torch.device | str) -> AbstractContextManager[object]:
    """Autocast to the active dtype on ``device``; a no-op under fp32 or on another device
    type than the one the policy was configured for."""
    device_type = torch.device(device).type
    if _ACTIVE.dtype is None or device_type != _ACTIVE.device_type:
        return nullcontext()
    return torch.autocast(device_type, dtype=_ACTIVE.dtype)


def compiled(module: nn.Module) -> nn.Module:
    """``module`` itself, or under ``run.compile=on`` its ``torch.compile`` wrapper (made once
    per module and kept while the module lives; it shares the module's parameters)."""
    if not _COMPILE:
        return module
    if module not in _COMPILED:
        _COMPILED[module] = torch.compile(module)
    return _COMPILED[module]


def key_tag() -> str:
    """``""`` under fp32, else the dtype's name: part of the cache key of a trained model."""
    return "" if _ACTIVE.dtype is None else _ACTIVE.name


class LossScaler:
    """``backward`` + ``step`` of one optimiser, with fp16's dynamic loss scaling on CUDA
    (``torch.amp.GradScaler``) and a plain backward and step otherwise."""

    def __init__(self, device: torch.device | str) -> None:
        device_type = torch.device(device).type
        enabled = (_ACTIVE.dtype == torch.float16 and device_type == "cuda"
                   and _ACTIVE.device_type == "cuda")
        self._scaler = torch.amp.GradScaler(device_type, enabled=enabled)

    @property
    def enabled(self) -> bool:
        return self._scaler.is_enabled()

    def step(self, loss: torch.Tensor, optimiser: torch.optim.Optimizer,
             max_grad_norm: float | None = None) -> None:
        """Back-propagate ``loss`` (scaled under fp16), clip the unscaled gradients to
        ``max_grad_norm`` if given, and step ``optimiser`` (skipped by the scaler when its
        gradients overflowed)."""
        self.backward(loss)
        self.apply(optimiser, max_grad_norm)

    def backward(self, loss: torch.Tensor) -> None:
        """Back-propagate one part of an accumulated step (scaled under fp16); :meth:`apply`
        after the last part."""
        self._scaler.scale(loss).backward()

    def apply(self, optimiser: torch.optim.Optimizer,
              max_grad_norm: float | None = None) -> None:
        """Clip (unscaled) to ``max_grad_norm`` if given, step ``optimiser`` on the accumulated
        gradients and update the scale."""
        if max_grad_norm is not None:
            self._scaler.unscale_(optimiser)
            torch.nn.utils.clip_grad_norm_(
                [p for group in optimiser.param_groups for p in group["params"]], max_grad_norm)
        self._scaler.step(optimiser)
        self._scaler.update()
