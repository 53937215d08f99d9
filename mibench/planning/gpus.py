"""Named GPU classes: memory and peak dense throughput from the vendors' datasheets.

Throughput is *dense* (no 2:4 sparsity). ``fp32`` is the non-tensor FP32 rate (``run.precision
fp32``: no autocast); ``bf16`` the BF16/FP16 tensor rate with FP32 accumulation, what the code
gets under ``auto`` on a CUDA GPU (bf16 autocast, or fp16 with loss scaling; precision.py). Sources:
NVIDIA Ada Lovelace GPU architecture whitepaper v1.01, appendix A (RTX 4090: 82.6 FP32,
165.2 FP16/BF16 tensor with FP32 accumulate; L4 datasheet: 30.3 FP32, 121 BF16 dense);
NVIDIA Ampere GA102 whitepaper (RTX 3090: 35.6 FP32, 71 FP16 tensor with FP32 accumulate);
A100 datasheet (19.5 FP32, 312 BF16); H100 SXM datasheet (67 FP32, 989 BF16; H200 has the same
compute with 141 GB of HBM3e). ``memory_gib`` is what the driver reports (L4: 22.5, H200: 131).
"""

from __future__ import annotations

from dataclasses import dataclass

from mibench.errors import UnknownNameError

DEFAULT_GPU = "rtx4090"
# Ours, not a datasheet value: the share of peak a well-fed PyTorch training loop reaches
# (the hand estimate of review-paper-scale.md uses the same 30 %).
DEFAULT_UTILISATION = 0.3
# run.precision (mibench/precision.py) → the rate its loops get on a CUDA GPU.
POLICY_RATES = {"auto": "bf16", "bf16": "bf16", "fp16": "bf16", "fp32": "fp32"}


@dataclass(frozen=True)
class GPU:
    """A GPU class: usable memory and peak dense TFLOP/s per precision."""

    name: str
    title: str
    memory_gib: float
    fp32_tflops: float
    bf16_tflops: float

    def tflops(self, precision: str) -> float:
        """Peak TFLOP/s at a rate (``fp32``, ``bf16``) or under a ``run.precision`` policy."""
        if precision not in POLICY_RATES:
            raise UnknownNameError(f"unknown precision {precision!r}; choose one of "
                                   f"{', '.join(POLICY_RATES)}")
        return self.fp32_tflops if POLICY_RATES[precision] == "fp32" else self.bf16_tflops


GPUS: dict[str, GPU] = {g.name: g for g in (
    GPU("rtx4090", "NVIDIA GeForce RTX 4090 (24 GB)", 24.0, 82.6, 165.2),
    GPU("rtx3090", "NVIDIA GeForce RTX 3090 (24 GB)", 24.0, 35.6, 71.0),
    GPU("l4", "NVIDIA L4 (24 GB)", 22.5, 30.3, 121.0),
    GPU("a100-40gb", "NVIDIA A100 SXM 40 GB", 40.0, 19.5, 312.0),
    GPU("a100-80gb", "NVIDIA A100 SXM 80 GB", 80.0, 19.5, 312.0),
    GPU("h100", "NVIDIA H100 SXM (80 GB)", 80.0, 67.0, 989.0),
    GPU("h200", "NVIDIA H200 SXM (141 GB)", 131.0, 67.0, 989.0),
)}


def get_gpu(name: str) -> GPU:
    try:
        return GPUS[name]
    except KeyError:
        raise UnknownNameError(f"unknown GPU class {name!r}; choose one of "
                               f"{', '.join(GPUS)} (--gpu)") from None
