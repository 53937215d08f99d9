"""Real-data worlds: plans of the splits → decoded uint8 arrays in the cache → a World.

A built world is one cache entry (``<cache>/real-world/<key>/``, written aside and renamed in by
:meth:`Cache.build`) whose key hashes the dataset name, its config and the listing of every
planned file (path, size, modification time): a changed folder is a new world. The listing is
checked folder by folder when a cached one is fresh (``listing.py``). Per split it
holds ``<split>.images.npy`` (uint8 N×3×R×R, memory-mapped on load), ``.labels.npy`` and
``.identities.npy``; ``meta.json`` records sizes, sources and every unreadable file, which is
skipped (logged, listed in the meta), never fatal. Private classes are the private-train
identities in plan order; a private-test image of an identity with no readable training image
is dropped. A split the world cannot provide (no FFHQ folder for ``aux-hq``, …) is absent, and
asking for it is a one-line :class:`DataError` naming the option that adds it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from mibench.cache import Cache
from mibench.datasets.real.celeba import (fgmia_groups, files_of, find_layout, read_identities,
                                          read_split_list)
from mibench.datasets.real.config import RealWorldConfig
from mibench.datasets.real.errors import DataError
from mibench.datasets.real.folders import ffhq_images, identity_folders
from mibench.datasets.real.images import CELEBA_CROP, FFHQ_CROP, SQUARE_CROP, decode_all
from mibench.datasets.real.listing import listing_fingerprint
from mibench.datasets.real.plan import (FFHQ_ID_OFFSET, WILD_ID_OFFSET, SplitPlan, by_identity,
                                        capped, flat, hold_out)
from mibench.errors import CacheError
from mibench.registry import DATASETS
from mibench.world import SPLITS, UNLABELLED, Split, World, WorldSummary

COMPONENT = "real-world"
BUILDER_VERSION = "1"
CHUNK = 2048  # images decoded at once
log = logging.getLogger("mibench.datasets.real")
Planner = Callable[[RealWorldConfig], list[SplitPlan]]


@dataclass
class RealWorld(World):
    """A world of real images; ``missing`` maps an absent split to the error that explains it."""

    missing: dict[str, str] = field(default_factory=dict)

    def split(self, name: str) -> Split:
        if name in self.missing:
            raise DataError(self.missing[name])
        return super().split(name)


def plan_celeba(config: RealWorldConfig) -> list[SplitPlan]:
    """Private, aux and public splits of CelebA under the FGMIA or GMI scheme."""
    layout = find_layout(config.root)
    identities = read_identities(layout.identity_file)
    path = layout.images.joinpath
    if config.split == "gmi":
        return _plan_gmi(config, identities, path)
    aux_ids, private_ids, public_ids = fgmia_groups(identities, config.private_identities)
    files = files_of(identities)

    def groups(ids: list[int], count: int) -> dict[int, list[Path]]:
        return capped({i: [path(n) for n in files[i]] for i in ids}, count,
                      config.max_per_identity)

    train, test = hold_out(groups(private_ids, config.private_identities),
                           config.private_test_fraction, CELEBA_CROP)
    return [train, test, flat("aux", groups(aux_ids, config.aux_identities), CELEBA_CROP),
            flat("public", groups(public_ids, config.public_identities), CELEBA_CROP)]


def _plan_gmi(config: RealWorldConfig, identities: dict[str, int],
              path: Callable[[str], Path]) -> list[SplitPlan]:
    split_dir = Path(config.split_dir).expanduser()
    plans = []
    for split in ("private-train", "private-test"):
        rows = sorted((label, name) for name, label in read_split_list(split_dir, split)
                      if label is not None and label < config.private_identities
                      and name in identities)
        groups = by_identity([path(n) for _, n in rows], [identities[n] for _, n in rows])
        plans.append(flat(split, capped(groups, 0, config.max_per_identity), CELEBA_CROP))
    public = [name for name, _ in read_split_list(split_dir, "public") if name in identities]
    groups = by_identity([path(n) for n in public], [identities[n] for n in public])
    plans.append(flat("aux", capped(groups, config.aux_identities, config.max_per_identity),
                      CELEBA_CROP))
    plans.append(flat("public", capped(groups, config.public_identities,
                                       config.max_per_identity), CELEBA_CROP))
    return plans


def plan_folders(config: RealWorldConfig) -> list[SplitPlan]:
    """An identity-per-folder tree: the first identities (natural order) are private, the
    next ``aux_identities`` aux, the rest public."""
    tree = identity_folders(config.root)
    groups = {i: files for i, files in enumerate(tree.values())}
    ids = list(groups)
    cut = config.private_identities
    if len(ids) < 2:
        raise DataError(f"{config.root} has {len(ids)} identity folder(s); a world needs at "
                        "least 2 private identities")
    private = capped({i: groups[i] for i in ids[:cut]}, 0, config.max_per_identity)
    aux = capped({i: groups[i] for i in ids[cut:cut + config.aux_identities]}, 0,
                 config.max_per_identity)
    public = capped({i: groups[i] for i in ids[cut + config.aux_identities:]},
                    config.public_identities, config.max_per_identity)
    train, test = hold_out(private, config.private_test_fraction, SQUARE_CROP)
    return [train, test, flat("aux", aux, SQUARE_CROP), flat("public", public, SQUARE_CROP)]


def plan_aux_sources(config: RealWorldConfig) -> list[SplitPlan]:
    """``aux-hq`` from an FFHQ folder and ``aux-wild`` from a VGGFace2 tree, where given."""
    plans = []
    if config.aux_hq_root:
        files = ffhq_images(config.aux_hq_root, "world.aux_hq_root")[:config.aux_hq_images or None]
        plans.append(SplitPlan("aux-hq", files, [FFHQ_ID_OFFSET + i for i in range(len(files))],
                               FFHQ_CROP, labelled=False))
    if config.aux_wild_root:
        tree = identity_folders(config.aux_wild_root, "world.aux_wild_root")
        groups = {WILD_ID_OFFSET + i: files for i, files in enumerate(tree.values())}
        plans.append(flat("aux-wild", capped(groups, config.aux_wild_identities,
                                             config.max_per_identity), SQUARE_CROP))
    return plans


MISSING_HINTS = {
    "aux-hq": "world {name} has no aux-hq split: give an FFHQ folder with "
              "--set world.aux_hq_root=PATH",
    "aux-wild": "world {name} has no aux-wild split: give a VGGFace2 identity-per-folder "
                "folder with --set world.aux_wild_root=PATH",
}


def _missing(name: str, plans: list[SplitPlan]) -> dict[str, str]:
    present = {plan.name for plan in plans if len(plan)}
    out = {}
    for split in SPLITS:
        if split not in present:
            out[split] = MISSING_HINTS.get(split, "world {name} has no images for its {split} "
                                           "split: the folder has too few identities; lower "
                                           "world.private_identities / world.aux_identities"
                                           ).format(name=name, split=split)
    return out


def _decoder(config: RealWorldConfig) -> Callable[..., tuple[np.ndarray, list[Path]]]:
    if not config.align:
        return decode_all
    from mibench.datasets.real.align import decode_all_aligned

    return decode_all_aligned


def write_split(plan: SplitPlan, config: RealWorldConfig, out: Path,
                label_of: dict[int, int] | None, progress: bool) -> dict[str, Any]:
    """Decode ``plan`` into ``out/<split>.*.npy``; returns its meta (size, unreadable files)."""
    decode = _decoder(config)
    resolution = config.resolution
    images = np.lib.format.open_memmap(out / f".{plan.name}.partial.npy", mode="w+",
                                       dtype=np.uint8, shape=(len(plan), 3, resolution, resolution))
    kept: list[int] = []
    bad: list[str] = []
    for start in range(0, len(plan), CHUNK):
        paths = plan.paths[start:start + CHUNK]
        chunk, unreadable = decode(paths, plan.crop, resolution,
                                   desc=f"{plan.name} {start}/{len(plan)}", progress=progress)
        skipped = set(unreadable)
        images[len(kept):len(kept) + len(chunk)] = chunk
        kept += [start + i for i, p in enumerate(paths) if p not in skipped]
        bad += [str(p) for p in unreadable]
    identities = np.array([plan.identities[i] for i in kept], dtype=np.int64)
    if label_of is not None:
        known = np.array([i in label_of for i in identities], dtype=bool)
        labels = np.array([label_of[i] for i in identities[known]], dtype=np.int64)
    else:
        known = np.ones(len(identities), dtype=bool)
        order = {identity: k for k, identity in enumerate(dict.fromkeys(identities.tolist()))}
        labels = (np.array([order[i] for i in identities.tolist()], dtype=np.int64)
                  if plan.labelled else np.full(len(identities), UNLABELLED, dtype=np.int64))
    final = np.lib.format.open_memmap(out / f"{plan.name}.images.npy", mode="w+", dtype=np.uint8,
                                      shape=(int(known.sum()), 3, resolution, resolution))
    rows = np.flatnonzero(known)
    for start in range(0, len(rows), CHUNK):
        final[start:start + CHUNK] = images[rows[start:start + CHUNK]]
    final.flush()
    del images, final
    (out / f".{plan.name}.partial.npy").unlink()
    np.save(out / f"{plan.name}.labels.npy", labels)
    np.save(out / f"{plan.name}.identities.npy", identities[known])
    for path in bad:
        log.warning("skipped unreadable image %s", path)
    return {"size": int(known.sum()), "unreadable": bad}


def write_world(name: str, plans: list[SplitPlan], config: RealWorldConfig, key: str, out: Path,
                progress: bool) -> None:
    splits: dict[str, Any] = {}
    label_of: dict[int, int] | None = None
    for plan in plans:
        private = plan.name in ("private-train", "private-test")
        splits[plan.name] = write_split(plan, config, out, label_of if private else None,
                                        progress)
        if plan.name == "private-train":
            ids = np.load(out / "private-train.identities.npy").tolist()
            label_of = {identity: k for k, identity in enumerate(dict.fromkeys(ids))}
    meta = {"name": name, "fingerprint": key, "builder_version": BUILDER_VERSION,
            "config": config.to_dict(), "splits": splits}
    (out / "meta.json").write_text(json.dumps(meta, indent=2))


def load_real_world(path: Path, missing: dict[str, str]) -> RealWorld:
    """Load a built world; images are memory-mapped (copy-on-write)."""
    try:
        meta: dict[str, Any] = json.loads((path / "meta.json").read_text())
        splits = {}
        for split in meta["splits"]:
            if meta["splits"][split]["size"] == 0:
                continue
            splits[split] = Split(
                name=split,
                images=torch.from_numpy(np.load(path / f"{split}.images.npy", mmap_mode="c")),
                labels=torch.from_numpy(np.load(path / f"{split}.labels.npy")),
                identities=torch.from_numpy(np.load(path / f"{split}.identities.npy")),
                meta={"source": meta["name"], "unreadable": meta["splits"][split]["unreadable"]})
    except (OSError, KeyError, ValueError) as err:
        raise CacheError(f"world cache entry {path} is unreadable ({err}); delete it and "
                         f"rebuild") from err
    absent = {**missing, **{s: f"world {meta['name']} has no readable images for its {s} split; "
                               f"see `mibench data prepare {meta['name']}`"
                            for s in SPLITS if s not in splits and s not in missing}}
    return RealWorld(name=meta["name"], fingerprint=meta["fingerprint"], splits=splits,
                     meta={**meta, "path": str(path)}, missing=absent)


def plan_world(name: str, planner: Planner, config: RealWorldConfig, cache: Cache,
               record_listing: bool = True) -> tuple[list[SplitPlan], str]:
    """The split plans of the world ``name`` and its key (= fingerprint): config and listing
    (recorded in the cache for the next fast check unless ``record_listing`` is off)."""
    plans = planner(config) + plan_aux_sources(config)
    listing = listing_fingerprint(plans, cache, verify=config.verify_listing,
                                  record_listing=record_listing)
    key = cache.key(COMPONENT, {"dataset": name, "config": config.identity()}, data=listing,
                    version=BUILDER_VERSION)
    return plans, key


def build_real_world(name: str, planner: Planner, config: RealWorldConfig, cache: Cache,
                     progress: bool = True) -> RealWorld:
    """Plan, decode into the cache (unless already there) and load the world ``name``."""
    plans, key = plan_world(name, planner, config, cache)
    path = cache.build(COMPONENT, key,
                       lambda tmp: write_world(name, plans, config, key, tmp, progress))
    return load_real_world(path, _missing(name, plans))


def summarise_real_world(name: str, planner: Planner, config: RealWorldConfig,
                         cache: Cache) -> WorldSummary:
    """The world's identity without decoding an image: the fingerprint from the plan (the key
    :func:`build_real_world` builds under). The private classes are counted in the built world
    when it is cached, else in the plan (an identity all of whose images turn out unreadable
    would drop out when it is built)."""
    plans, key = plan_world(name, planner, config, cache, record_listing=False)
    built = cache.lookup(COMPONENT, key)
    if built is not None:
        return load_real_world(built, _missing(name, plans)).summary()
    private = next(plan for plan in plans if plan.name == "private-train")
    return WorldSummary(name, key, len(set(private.identities)))


@DATASETS.register("celeba")
class CelebADataset:
    """CelebA from ``--root`` (FGMIA or GMI split); FFHQ / VGGFace2 as aux-hq / aux-wild."""

    description = ("CelebA from --root: FGMIA split (or GMI/KEDMI lists), 108-px centre crop; "
                   "FFHQ/VGGFace2 folders as aux-hq/aux-wild")
    Config = RealWorldConfig

    @staticmethod
    def build(config: RealWorldConfig, cache: Cache, progress: bool = True) -> World:
        return build_real_world("celeba", plan_celeba, config, cache, progress)

    @staticmethod
    def summary(config: RealWorldConfig, cache: Cache) -> WorldSummary:
        return summarise_real_world("celeba", plan_celeba, config, cache)


@DATASETS.register("folders", aliases=("vggface2",))
class FolderTreeDataset:
    """Any identity-per-folder tree from ``--root`` (VGGFace2, FaceScrub, your own)."""

    description = ("identity-per-folder tree from --root (VGGFace2, FaceScrub, ...): first "
                   "identities private, next aux, rest public; centre square crop")
    Config = RealWorldConfig

    @staticmethod
    def build(config: RealWorldConfig, cache: Cache, progress: bool = True) -> World:
        return build_real_world("folders", plan_folders, config, cache, progress)

    @staticmethod
    def summary(config: RealWorldConfig, cache: Cache) -> WorldSummary:
        return summarise_real_world("folders", plan_folders, config, cache)
