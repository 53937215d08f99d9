"""Content-addressed cache for worlds, trained targets and priors (design.md §4).

An entry lives in ``<root>/<component>/<key>/`` where ``key`` hashes (component, config, data
fingerprint, component version). It is built in a temporary sibling directory, marked complete
with a ``COMPLETE`` file and only then renamed into place, so an interrupted build is never
reused. A per-entry file lock makes concurrent builders of the same entry (processes on one
machine, or Ray workers sharing a cache directory) build it once: the second waits, then reads
the first one's copy.

Correctness does not rest on the lock. A reader only ever sees a directory that carries its
marker, renamed in whole; a complete entry is never deleted or replaced; and a builder that
loses the rename race discards its own copy and returns the winner's. On a shared filesystem
where ``flock`` is refused (some NFS mounts answer ENOLCK) the build runs unlocked and stays
correct, at the cost of possibly duplicated work; where ``flock`` only locks per machine (NFS
mounted with ``local_lock=flock``), builders on different machines may likewise both build.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import logging
import os
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from mibench.errors import CacheError

MARKER = "COMPLETE"
# errno values of a filesystem that refuses flock (NFS without a lock manager, some FUSE mounts)
UNLOCKABLE = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS)
log = logging.getLogger("mibench.cache")


def default_root() -> Path:
    """``$MIBENCH_CACHE`` if set, else ``~/.cache/mibench``."""
    env = os.environ.get("MIBENCH_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "mibench"


def fingerprint(payload: Any) -> str:
    """Stable sha256 (hex, 16 chars) of a JSON-serialisable payload."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


class Cache:
    """A directory of completed, immutable build results."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root) if root is not None else default_root()

    def key(self, component: str, config: Mapping[str, Any], *, data: str = "",
            version: str = "1") -> str:
        """Hash of everything that determines the entry's contents."""
        return fingerprint({"component": component, "config": config, "data": data,
                            "version": version})

    def path(self, component: str, key: str) -> Path:
        return self.root / component / key

    def lookup(self, component: str, key: str) -> Path | None:
        """The entry's directory if it is complete, else ``None``."""
        path = self.path(component, key)
        return path if (path / MARKER).is_file() else None

    def build(self, component: str, key: str, builder: Callable[[Path], None]) -> Path:
        """Return the complete entry, running ``builder(tmp_dir)`` first if it is missing.

        ``builder`` writes its files into the directory it is given. If it raises, nothing is
        left behind and the error propagates.
        """
        found = self.lookup(component, key)
        if found is not None:
            return found
        final = self.path(component, key)
        final.parent.mkdir(parents=True, exist_ok=True)
        with _locked(final.parent / f".{key}.lock"):
            found = self.lookup(component, key)
            if found is not None:
                return found
            if final.exists() and not (final / MARKER).is_file():  # from before markers
                shutil.rmtree(final)
            tmp = final.parent / f".tmp-{key}-{uuid.uuid4().hex[:8]}"
            tmp.mkdir()
            try:
                builder(tmp)
                (tmp / MARKER).write_text(json.dumps({"component": component, "key": key}))
                _rename_unless_complete(tmp, final)
            finally:
                if tmp.exists():
                    shutil.rmtree(tmp, ignore_errors=True)
        return final

    def require(self, component: str, key: str) -> Path:
        """The complete entry or a :class:`CacheError` saying how to build it."""
        found = self.lookup(component, key)
        if found is None:
            raise CacheError(f"cache entry {component}/{key} is missing or incomplete under "
                             f"{self.root}; build it first (e.g. `mibench data build`)")
        return found


def _rename_unless_complete(tmp: Path, final: Path) -> None:
    """Move ``tmp`` to ``final``; when another builder got there first (possible only where
    the lock does not hold) keep its complete copy and leave ``tmp`` to be discarded."""
    try:
        os.rename(tmp, final)
    except OSError as err:
        if err.errno not in (errno.EEXIST, errno.ENOTEMPTY) or not (final / MARKER).is_file():
            raise
        log.info("cache entry %s was built concurrently elsewhere; keeping that copy", final)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``path``; unlocked (with a warning) where the filesystem
    refuses ``flock``, which duplicates work at worst (see the module docstring)."""
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX)
            locked = True
        except OSError as err:
            if err.errno not in UNLOCKABLE:
                raise
            log.warning("cache lock %s unavailable (%s); building without it", path,
                        os.strerror(err.errno))
            locked = False
        try:
            yield
        finally:
            if locked:
                fcntl.flock(fh, fcntl.LOCK_UN)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
