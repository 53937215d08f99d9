"""The private reference of a run: private-train images and features computed once.

Every anchor compares reconstructions with the *training* images of the target class
(anchors.md §1), so the reference is the ``private-train`` split. Its evaluation-model
features are computed on first use and reused by every metric and every cell of a run; other
features (Inception for FID) are cached per identity, so only attacked identities are embedded.
With a :class:`ReferenceStore` they are also kept in the cache, so later runs on the same world
and evaluation model load them instead of embedding the private images again.
"""

from __future__ import annotations

import logging
import pickle
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

import torch
from torch import nn

from mibench import precision
from mibench.cache import Cache
from mibench.errors import CacheError
from mibench.metrics.batching import logits_and_features, module_device
from mibench.world import Split

if TYPE_CHECKING:
    from mibench.metrics.attribute_reference import AttributeReference

log = logging.getLogger("mibench.metrics")

COMPONENT = "metric-reference"
REFERENCE_VERSION = "1"  # bump when an embedding's definition changes
HELD_BYTES = 2 * 2**30   # per-identity embeddings a reference keeps in memory (held_features_of)


class ReferenceStore:
    """Features of the private reference in the cache (atomic, locked entries).

    ``data_key`` identifies the private images (the world's fingerprint), ``eval_key`` the
    evaluation model (its zoo cache key), so an entry is reused only for the same images and,
    for evaluation-model features, the same model.
    """

    def __init__(self, cache: Cache, data_key: str, eval_key: str) -> None:
        self.cache = cache
        self.data_key = data_key
        self.eval_key = eval_key

    def features(self, name: str, rows: int, compute: Callable[[], torch.Tensor], *,
                 device: torch.device, uses_eval_model: bool = False) -> torch.Tensor:
        """The ``rows``-row tensor stored under ``name``, computed (and stored) on first use.
        An unreadable or mis-shaped entry is reported, removed and computed again."""
        config = {"name": name, "eval_model": self.eval_key if uses_eval_model else None}
        if precision.key_tag():  # embedded under autocast: not the fp32 features
            config["precision"] = precision.key_tag()
        key = self.cache.key(COMPONENT, config, data=self.data_key, version=REFERENCE_VERSION)

        def build(folder: Path) -> None:
            torch.save(compute().cpu(), folder / "features.pt")

        for _ in range(2):
            path = self.cache.build(COMPONENT, key, build)
            try:
                features = torch.load(path / "features.pt", map_location=device,
                                      weights_only=True)
                if isinstance(features, torch.Tensor) and features.shape[0] == rows:
                    return features
                problem = f"holds {type(features).__name__} {getattr(features, 'shape', '')}"
            except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as err:
                problem = f"is unreadable ({err})"
            log.warning("cached reference features %s %s; computing them again", path, problem)
            shutil.rmtree(path, ignore_errors=True)
        raise CacheError(f"cached reference features {path} {problem} twice; is "
                           f"{self.cache.root} writable and not full?")


class PrivateReference:
    """Private-train images and labels with cached eval-model and per-identity features.

    Features live on the evaluation model's device, which is where metrics run. The metrics'
    other private inputs ride along: the second evaluation model ``eval2_model`` (issue 19.4;
    ``None`` when the run has none), the ``private-test`` split ``test_split``, whose
    impostor pairs set the verification threshold (:mod:`mibench.metrics.verification`), and
    ``attributes`` (synthetic worlds), what the ground-truth leakage metrics need
    (metrics/attributes.py).
    """

    def __init__(self, split: Split, eval_model: nn.Module, *, batch_size: int = 128,
                 store: ReferenceStore | None = None, eval2_model: nn.Module | None = None,
                 test_split: Split | None = None,
                 attributes: AttributeReference | None = None) -> None:
        if split.name != "private-train":
            raise ValueError(f"the metric reference is the private-train split, got {split.name!r}")
        if test_split is not None and test_split.name != "private-test":
            raise ValueError(f"the verification pairs come from the private-test split, got "
                             f"{test_split.name!r}")
        self.split = split
        self.eval_model = eval_model
        self.eval2_model = eval2_model
        self.test_split = test_split
        self.thresholds: dict[str, float] = {}  # verification τ by target state digest
        self.batch_size = batch_size
        self.store = store
        self.attributes = attributes
        self._eval_features: torch.Tensor | None = None
        self._per_identity: dict[tuple[str, int], torch.Tensor] = {}
        self._held: dict[tuple[str, int], torch.Tensor] = {}
        self._held_bytes = 0

    @property
    def device(self) -> torch.device:
        return module_device(self.eval_model)

    def indices_of(self, label: int) -> torch.Tensor:
        """Indices of the private-train images of identity ``label`` (raises if there are none)."""
        index = self.split.of_class(label)
        if index.numel() == 0:
            raise ValueError(f"identity {label} has no private-train image; generated labels must "
                             f"be private class indices 0..{self.split.num_classes - 1}")
        return index

    def images_of(self, label: int) -> torch.Tensor:
        """Private-train images of identity ``label`` in [0, 1], on :attr:`device`."""
        return self.split.float_images(self.indices_of(label)).to(self.device)

    def eval_features(self) -> torch.Tensor:
        """Evaluation-model features of every private-train image (N×D), computed once."""
        if self._eval_features is None:
            def compute() -> torch.Tensor:
                return torch.cat([logits_and_features(self.eval_model, images, self.batch_size)[1]
                                  for images, _ in self.split.batches(self.batch_size)])

            self._eval_features = compute() if self.store is None else self.store.features(
                "eval-features", len(self.split), compute, device=self.device,
                uses_eval_model=True)
        return self._eval_features

    def features_of(self, kind: str, labels: Iterable[int],
                    embed: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """``embed`` of the private images of ``labels``, concatenated; cached per (kind, label),
        in the :class:`ReferenceStore` too when there is one. ``kind`` names an embedding of the
        images alone (Inception, LPIPS): it must not depend on the evaluation model."""
        parts = []
        for label in labels:
            key = (kind, int(label))
            if key not in self._per_identity:
                def compute(label: int = int(label)) -> torch.Tensor:
                    return embed(self.images_of(label))

                self._per_identity[key] = compute() if self.store is None else self.store.features(
                    f"{kind}/identity-{label}", int(self.indices_of(int(label)).numel()),
                    compute, device=self.device)
            parts.append(self._per_identity[key])
        return torch.cat(parts)

    def held_features_of(self, kind: str, label: int,
                         embed: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """``embed`` of identity ``label``'s private images, on :attr:`device`, for embeddings
        too large to keep them all (ST-LPIPS: ~2 MB per image, 48 GB for a paper-scale
        reference; issue 17). They are kept on the CPU, in memory only, while the kept ones
        total at most ``HELD_BYTES``, and recomputed beyond that."""
        key = (kind, int(label))
        if key in self._held:
            return self._held[key].to(self.device)
        features = embed(self.images_of(int(label)))
        size = features.numel() * features.element_size()
        if self._held_bytes + size <= HELD_BYTES:
            self._held[key] = features.cpu()
            self._held_bytes += size
        return features
