"""The listing part of a real-data world's cache key, without stat-ing every file when it can.

The key (:func:`full_listing` = the builder's ``data``) hashes every planned file's split, path,
identity, size and modification time: one ``stat`` per image, slow for CelebA's 202,599 files on
a network filesystem. :func:`listing_fingerprint` keeps that key and adds a cached listing: a
*stamp* of the plan (every planned path and identity, no ``stat``) and of each folder holding
planned files (its size and ``mtime_ns`` and its entry names from ``os.scandir``: one
``stat`` per folder) names the full listing computed last time. A matching stamp is fresh
(adding, removing or renaming a file changes it); a file rewritten in place is not seen until
``verify`` (``--set world.verify_listing=true``) checks every file again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Sequence

from mibench.cache import Cache, atomic_write_bytes
from mibench.datasets.real.plan import SplitPlan

LISTINGS = "real-world-listing"   # <cache>/real-world-listing/<stamp>.json → the full listing
log = logging.getLogger("mibench.datasets.real")


def full_listing(plans: Sequence[SplitPlan]) -> str:
    """Hash of every planned file's split, path, size and modification time."""
    digest = hashlib.sha256()
    for plan in plans:
        for path, identity in zip(plan.paths, plan.identities):
            try:
                stat = path.stat()
                digest.update(f"{plan.name}|{path}|{identity}|{stat.st_size}|"
                              f"{stat.st_mtime_ns}\n".encode())
            except OSError:
                digest.update(f"{plan.name}|{path}|{identity}|missing\n".encode())
    return digest.hexdigest()[:16]


def listing_stamp(plans: Sequence[SplitPlan]) -> tuple[str, int]:
    """Hash of the plan and of every folder holding planned files (size, ``mtime_ns``, entry
    names), and the number of folders: no ``stat`` of a file."""
    digest = hashlib.sha256()
    folders: dict[Path, None] = {}
    for plan in plans:
        for path, identity in zip(plan.paths, plan.identities):
            digest.update(f"{plan.name}|{path}|{identity}\n".encode())
            folders.setdefault(path.parent)
    for folder in folders:
        try:
            stat = folder.stat()
            with os.scandir(folder) as entries:
                names = sorted(entry.name for entry in entries)
            digest.update(f"{folder}|{stat.st_size}|{stat.st_mtime_ns}|{len(names)}\n".encode())
            digest.update("\n".join(names).encode())
        except OSError:
            digest.update(f"{folder}|missing\n".encode())
    return digest.hexdigest()[:16], len(folders)


def listing_fingerprint(plans: Sequence[SplitPlan], cache: Cache, verify: bool = False,
                        record_listing: bool = True) -> str:
    """:func:`full_listing` of ``plans``: from the cached listing when its stamp is fresh (and
    not ``verify``), else computed and cached (unless ``record_listing`` is off: a read-only
    look such as ``zoo list`` writes nothing). Logs which check ran and how long it took."""
    clock = time.perf_counter()
    stamp, folders = listing_stamp(plans)
    record = cache.root / LISTINGS / f"{stamp}.json"
    if not verify and record.is_file():
        listing = json.loads(record.read_text())["listing"]
        log.info("world listing fresh: %d folder(s) checked in %.2f s (world.verify_listing="
                 "true checks every file)", folders, time.perf_counter() - clock)
        return str(listing)
    listing = full_listing(plans)
    if record_listing:
        atomic_write_bytes(record, json.dumps({"listing": listing}).encode())
    files = sum(len(plan) for plan in plans)
    log.info("world listing checked file by file: %d file(s) in %.2f s", files,
             time.perf_counter() - clock)
    return listing
