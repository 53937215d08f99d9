"""Host → device transfer of training batches (issue 17, "use the GPU well").

On CUDA a batch is staged in pinned memory and copied with ``non_blocking=True`` on a side
stream, one batch ahead: the copy of batch i+1 overlaps the compute of batch i, and the host
never waits for the device. On other devices batches are moved with a plain ``.to`` in order,
so CPU training does exactly the work it did before. Images go channels-last on CUDA only
(channels-last IResNet crashed on the CPU).
"""

from __future__ import annotations

from typing import Callable, Iterator

import torch
from torch import Tensor

Batch = tuple[Tensor, Tensor]


def channels_last(device: torch.device) -> bool:
    """Whether 4-D tensors and conv weights use the channels-last layout on ``device``."""
    return device.type == "cuda"


def to_device(tensor: Tensor, device: torch.device) -> Tensor:
    """``tensor`` on ``device``: pinned and non-blocking on CUDA, a plain ``.to`` elsewhere."""
    if device.type != "cuda":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


def _layout(images: Tensor, device: torch.device) -> Tensor:
    if channels_last(device) and images.ndim == 4:
        return images.contiguous(memory_format=torch.channels_last)
    return images


def device_batches(load: Callable[[Tensor], Batch], batches: list[Tensor],
                   device: torch.device) -> Iterator[Batch]:
    """``load(index)`` (images, labels on the CPU) for every index batch, on ``device``, in order.

    CUDA: the next batch is copied on a side stream while the current one is consumed; the
    consuming stream waits for its copy and the batch's memory is recorded on that stream.
    """
    if device.type != "cuda":
        for index in batches:
            images, labels = load(index)
            yield images.to(device), labels.to(device)
        return
    copier = torch.cuda.Stream(device)

    def stage(index: Tensor) -> Batch:
        images, labels = load(index)
        with torch.cuda.stream(copier):
            return _layout(to_device(images, device), device), to_device(labels, device)

    pending = stage(batches[0]) if batches else None
    for position in range(len(batches)):
        current = pending
        torch.cuda.current_stream(device).wait_stream(copier)
        for tensor in current:
            tensor.record_stream(torch.cuda.current_stream(device))
        pending = stage(batches[position + 1]) if position + 1 < len(batches) else None
        yield current
