"""Batched, gradient-free model application in eval mode, on the model's own device.

The model's train/eval flag is restored afterwards (the torchattacks convention, anchors.md §5),
so evaluating never leaves a caller's model in a different mode. Inputs move to the device the
model lives on, one batch at a time; results stay there.

Mixed precision (issue 17): the network forwards of the metric passes run under the run's
autocast (:func:`mibench.precision.autocast`; a no-op under fp32, the CPU default) and their
outputs are cast to float32 before any statistic: target/evaluation logits and features here
(Acc@k, KNN distances, feature distance), Inception pool3 features (FID: mean, covariance and
the trace term stay float64) and the LPIPS trunk features (normalised and weighted in float32).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

from mibench import precision


def module_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for a stateless module)."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


@contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """``model.eval()`` and ``torch.no_grad()`` for the block; the training flag is restored."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        model.train(was_training)


def logits_and_features(model: nn.Module, images: torch.Tensor,
                        batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logits, features)`` of a target-contract model (mibench/target.py) on [0,1] images."""
    device = module_device(model)
    logits, features = [], []
    with evaluating(model):
        for start in range(0, images.shape[0], batch_size):
            with precision.autocast(device):
                out_logits, out_features = model(images[start:start + batch_size].to(device))
            logits.append(out_logits.float())
            features.append(out_features.float().flatten(1))
    return torch.cat(logits), torch.cat(features)
