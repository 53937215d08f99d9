"""The private side of the figures: a run's private images and its evaluation model.

Reports read the results store and the metric definitions, never the harness (design.md §5).
The figures also need what the store does not hold: the private images an attack tried to
recover and the evaluation model's embeddings. They are rebuilt from the run's stored
configuration through the two public loaders the harness uses as well,
``mibench.runconfig.build_world`` and ``mibench.targets.zoo.load_evaluator``; both are served from
the cache after a run. This module is the only place a report touches anything but the store.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

import torch
import torch.nn.functional as F

from mibench.cache import Cache
from mibench.metrics.batching import logits_and_features
from mibench.runconfig import build_world
from mibench.target import Target
from mibench.targets.zoo import DEFAULT_EVALUATOR, load_evaluator, resolve_device
from mibench.world import Split

BATCH = 256


@dataclass
class PrivateView:
    """The private-train split of a run's world and the evaluation model that scores it."""

    split: Split
    evaluator: Target
    device: torch.device

    def images_of(self, label: int, count: int) -> torch.Tensor:
        """Up to ``count`` uint8 private-train images of class ``label``."""
        return self.split.images[self.split.of_class(label)[:count]]

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """L2-normalised evaluation features of uint8 (or [0,1] float) images, on the CPU."""
        if len(images) == 0:
            return torch.empty(0)
        floats = images.float() / 255 if images.dtype == torch.uint8 else images.float()
        with _one_cpu_thread(self.device):
            features = logits_and_features(self.evaluator, floats, BATCH)[1]
        return F.normalize(features, dim=1).cpu()

    def class_features(self, labels: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Features and labels of every private-train image of the classes ``labels``."""
        index = torch.cat([self.split.of_class(label) for label in labels])
        return self.embed(self.split.images[index]), self.split.labels[index]


@contextmanager
def _one_cpu_thread(device: torch.device) -> Iterator[None]:
    """One intra-op thread on the CPU: the few small batches of a report ran ~200x slower with
    two threads on a busy 2-core machine (measured: 4.5 s vs 0.02 s for 4 images)."""
    threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def load_private(config: dict[str, Any], cache_dir: str | None,
                 progress: bool) -> PrivateView:
    """Rebuild the world of a stored run configuration and load its evaluation model."""
    cache = Cache(cache_dir or config["run"].get("cache_dir") or None)
    world = build_world(config, cache, progress=progress)
    device = resolve_device("auto")
    evaluator = load_evaluator(world, cache, config["preset"], device, progress=progress,
                               name=config["run"].get("eval_model") or DEFAULT_EVALUATOR)
    return PrivateView(world.split("private-train"), evaluator, device)
