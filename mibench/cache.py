"""Content-addressed cache for worlds, trained targets and priors (design.md §4).

An entry lives in ``<root>/<component>/<key>/`` where ``key`` hashes (component, config, data
fingerprint, component version). It is built in a temporary sibling directory, marked complete
with a ``COMPLETE`` file and only then renamed into place, so an interrupted build is never
reused. A per-entry file lock makes concurrent builders of the same entry produce one copy.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from mibench.errors import CacheError

MARKER = "COMPLETE"


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
            if final.exists():  # left by a build from before markers were atomic: discard
                shutil.rmtree(final)
            tmp = final.parent / f".tmp-{key}-{uuid.uuid4().hex[:8]}"
            tmp.mkdir()
            try:
                builder(tmp)
                (tmp / MARKER).write_text(json.dumps({"component": component, "key": key}))
                os.rename(tmp, final)
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


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
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
