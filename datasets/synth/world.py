"""Building, caching and loading the synthetic face world (design.md §3, paper.md "Setting").

Identity groups are disjoint ranges of global identity ids, in this order: private, aux,
aux-hq, aux-wild, public. ``private-train`` and ``private-test`` show the same private
identities under independent nuisances. Every identity group and every split draws from its own
generator, seeded from (world seed, name), so e.g. the private identities do not change when the
public pool grows. Images are rendered in chunks; the bytes do not depend on the chunk size or
the number of threads (see renderer.py).

A built world is one cache entry (``<cache>/world/<key>/``) whose key hashes the config and
:data:`RENDERER_VERSION`; that key is the world's fingerprint. It holds, per split,
``<split>.images.npy`` (uint8 N×3×H×W, memory-mapped on load), ``.labels.npy``,
``.identities.npy`` and ``.nuisances.npy``; ``attributes.npy`` (ground-truth attribute vector
of every global identity) and ``meta.json``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from mibench.cache import Cache
from mibench.datasets.synth.config import WorldConfig
from mibench.datasets.synth.face import face_params
from mibench.datasets.synth.identity import ATTRIBUTE_NAMES, sample_identities
from mibench.datasets.synth.nuisance import NUISANCE_NAMES, sample_nuisances
from mibench.datasets.synth.renderer import RENDERER_VERSION, render_chunks
from mibench.errors import CacheError
from mibench.registry import DATASETS
from mibench.world import SPLITS, UNLABELLED, Split, World, WorldSummary

COMPONENT = "world"


@dataclass(frozen=True)
class SplitPlan:
    """What one split contains: which identity group, how many images each, in which style."""

    name: str
    group: str
    style: str
    per_identity: int
    labelled: bool


def plan_splits(config: WorldConfig) -> tuple[dict[str, tuple[int, int, str]], list[SplitPlan]]:
    """Identity groups (name → first global id, count, style) and the splits drawn from them."""
    counts = {"private": (config.private_identities, config.style),
              "aux": (config.aux_identities, config.style),
              "aux-hq": (config.aux_hq_images, "hq"),
              "aux-wild": (config.aux_wild_identities, "wild"),
              "public": (config.public_identities, config.style)}
    groups: dict[str, tuple[int, int, str]] = {}
    first = 0
    for group, (count, style) in counts.items():
        groups[group] = (first, count, style)
        first += count
    style = config.style
    splits = [
        SplitPlan("private-train", "private", style, config.private_train_per_identity, True),
        SplitPlan("private-test", "private", style, config.private_test_per_identity, True),
        SplitPlan("aux", "aux", style, config.aux_per_identity, True),
        SplitPlan("aux-hq", "aux-hq", "hq", 1, False),
        SplitPlan("aux-wild", "aux-wild", "wild", config.aux_wild_per_identity, True),
        SplitPlan("public", "public", style, config.public_per_identity, True),
    ]
    return groups, splits


def derive_seed(seed: int, *names: str) -> int:
    """A 63-bit seed for the stream ``names`` of the world with ``seed``."""
    digest = hashlib.sha256(":".join([str(seed), *names]).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def world_key(config: WorldConfig, cache: Cache) -> str:
    """The world's fingerprint: cache key of its config and renderer version."""
    return cache.key(COMPONENT, config.to_dict(), version=RENDERER_VERSION)


def build_world(config: WorldConfig, cache: Cache, progress: bool = True,
                chunk_size: int | None = None) -> World:
    """Render the world into the cache (unless already there) and load it.

    ``chunk_size`` (images rendered at once) only trades memory for speed (see
    :func:`render_chunks`); it never changes the images.
    """
    key = world_key(config, cache)
    path = cache.build(COMPONENT, key,
                       lambda tmp: write_world(config, key, tmp, progress, chunk_size))
    return load_world(path)


def write_world(config: WorldConfig, key: str, out: Path, progress: bool = True,
                chunk_size: int | None = None) -> None:
    """Render every split of ``config`` into the directory ``out``."""
    groups, splits = plan_splits(config)
    tables = []
    for group, (_, count, style) in groups.items():
        generator = torch.Generator().manual_seed(derive_seed(config.seed, "identities", group))
        tables.append(sample_identities(count, style, generator))
    attributes = torch.cat(tables)
    np.save(out / "attributes.npy", attributes.numpy())
    sizes = {}
    with tqdm(total=config.num_images(), desc="rendering synth world", unit="img",
              disable=not progress) as bar:
        for plan in splits:
            first, count, _ = groups[plan.group]
            identities = torch.arange(first, first + count).repeat_interleave(plan.per_identity)
            labels = (identities - first) if plan.labelled else torch.full_like(identities,
                                                                               UNLABELLED)
            generator = torch.Generator().manual_seed(
                derive_seed(config.seed, "nuisances", plan.name))
            nuisances = sample_nuisances(attributes[identities], plan.style, generator)
            params = face_params(attributes[identities], nuisances)
            shape = (len(identities), 3, config.resolution, config.resolution)
            images = np.lib.format.open_memmap(out / f"{plan.name}.images.npy", mode="w+",
                                               dtype=np.uint8, shape=shape)
            for start, chunk in render_chunks(params, config.resolution, config.supersample,
                                              chunk_size):
                images[start:start + len(chunk)] = chunk.numpy()
                bar.update(len(chunk))
            images.flush()
            del images
            np.save(out / f"{plan.name}.labels.npy", labels.numpy())
            np.save(out / f"{plan.name}.identities.npy", identities.numpy())
            np.save(out / f"{plan.name}.nuisances.npy", nuisances.numpy())
            sizes[plan.name] = len(identities)
    meta = {"name": "synth", "fingerprint": key, "renderer_version": RENDERER_VERSION,
            "config": config.to_dict(), "sizes": sizes,
            "styles": {plan.name: plan.style for plan in splits},
            "identity_groups": {g: [first, count] for g, (first, count, _) in groups.items()},
            "attribute_names": list(ATTRIBUTE_NAMES), "nuisance_names": list(NUISANCE_NAMES)}
    (out / "meta.json").write_text(json.dumps(meta, indent=2))


def load_world(path: Path) -> World:
    """Load a built world; images are memory-mapped (copy-on-write), so this is fast."""
    try:
        meta: dict[str, Any] = json.loads((path / "meta.json").read_text())
        attributes = torch.from_numpy(np.load(path / "attributes.npy"))
        splits = {}
        for name in SPLITS:
            identities = torch.from_numpy(np.load(path / f"{name}.identities.npy"))
            splits[name] = Split(
                name=name,
                images=torch.from_numpy(np.load(path / f"{name}.images.npy", mmap_mode="c")),
                labels=torch.from_numpy(np.load(path / f"{name}.labels.npy")),
                identities=identities, attributes=attributes[identities],
                meta={"style": meta["styles"][name], "attribute_names": meta["attribute_names"],
                      "nuisance_names": meta["nuisance_names"],
                      "nuisances": torch.from_numpy(np.load(path / f"{name}.nuisances.npy"))})
    except (OSError, KeyError, ValueError) as err:
        raise CacheError(f"world cache entry {path} is unreadable ({err}); delete it and "
                         f"rebuild") from err
    return World(name="synth", fingerprint=meta["fingerprint"], splits=splits,
                 meta={**meta, "path": str(path)})


@DATASETS.register("synth")
class SynthDataset:
    """The built-in synthetic face world: offline stand-in for CelebA, FFHQ and VGGFace2."""

    description = ("built-in synthetic faces (CelebA/FFHQ/VGGFace2-like styles), "
                   "offline, with ground-truth identity attributes")
    Config = WorldConfig

    @staticmethod
    def build(config: WorldConfig, cache: Cache, progress: bool = True) -> World:
        return build_world(config, cache, progress=progress)

    @staticmethod
    def summary(config: WorldConfig, cache: Cache) -> WorldSummary:
        """The world's identity from its config alone: :func:`world_key` is the fingerprint
        :func:`write_world` records, and the private classes are the private identities."""
        return WorldSummary("synth", world_key(config, cache), config.private_identities)
