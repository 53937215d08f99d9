"""The cache: content-addressed, atomic, never reuses an interrupted build."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from mibench.cache import MARKER, Cache, atomic_write_bytes, fingerprint


def test_key_depends_on_every_part(cache):
    base = cache.key("prior", {"steps": 1}, data="abc", version="1")
    assert base == cache.key("prior", {"steps": 1}, data="abc", version="1")
    others = {cache.key("prior", {"steps": 2}, data="abc", version="1"),
              cache.key("prior", {"steps": 1}, data="abd", version="1"),
              cache.key("prior", {"steps": 1}, data="abc", version="2"),
              cache.key("world", {"steps": 1}, data="abc", version="1")}
    assert base not in others and len(others) == 4
    assert fingerprint({"a": 1, "b": 2}) == fingerprint({"b": 2, "a": 1})


def test_build_once_then_reuse(cache):
    calls = []

    def builder(path):
        calls.append(path)
        (path / "weights.bin").write_bytes(b"123")

    first = cache.build("prior", "k1", builder)
    second = cache.build("prior", "k1", builder)
    assert first == second and len(calls) == 1
    assert (first / "weights.bin").read_bytes() == b"123" and (first / MARKER).is_file()


def test_a_failed_build_leaves_nothing_and_is_rebuilt(cache):
    def failing(path):
        (path / "half.bin").write_bytes(b"x")
        raise RuntimeError("killed mid-way")

    with pytest.raises(RuntimeError):
        cache.build("prior", "k2", failing)
    assert cache.lookup("prior", "k2") is None
    assert list((cache.root / "prior").glob("*k2*")) == [cache.root / "prior" / ".k2.lock"]
    built = cache.build("prior", "k2", lambda p: (p / "ok").write_text("ok"))
    assert (built / "ok").read_text() == "ok"


def test_an_entry_without_marker_is_never_reused(cache):
    stale = cache.path("prior", "k3")
    stale.mkdir(parents=True)
    (stale / "weights.bin").write_bytes(b"torn")
    assert cache.lookup("prior", "k3") is None
    built = cache.build("prior", "k3", lambda p: (p / "weights.bin").write_bytes(b"good"))
    assert (built / "weights.bin").read_bytes() == b"good"


BUILD_SCRIPT = textwrap.dedent("""
    import sys, time
    from mibench.cache import Cache
    def builder(path):
        (path / "part1").write_text("1")
        print("started", flush=True)
        time.sleep(float(sys.argv[3]))
        (path / "part2").write_text(sys.argv[2])
    Cache(sys.argv[1]).build("prior", "shared", builder)
""")


def _start(root, tag: str, sleep: float) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", BUILD_SCRIPT, str(root), tag, str(sleep)],
                            stdout=subprocess.PIPE, text=True)


def test_a_killed_build_is_not_reused(tmp_path):
    proc = _start(tmp_path, "A", 60)
    assert proc.stdout.readline().strip() == "started"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    cache = Cache(tmp_path)
    assert cache.lookup("prior", "shared") is None
    built = cache.build("prior", "shared", lambda p: (p / "part2").write_text("B"))
    assert (built / "part2").read_text() == "B"
    assert sorted(p.name for p in built.iterdir()) == [MARKER, "part2"]


def test_concurrent_builders_produce_one_copy(tmp_path):
    procs = [_start(tmp_path, tag, 1.0) for tag in ("A", "B")]
    for proc in procs:
        proc.wait(timeout=60)
    started = sum(p.stdout.read().count("started") for p in procs)
    entry = Cache(tmp_path).lookup("prior", "shared")
    assert entry is not None and started == 1
    assert (entry / "part2").read_text() in {"A", "B"}
    assert [p.name for p in (tmp_path / "prior").iterdir() if not p.name.startswith(".")] == \
        ["shared"]


def test_atomic_write_replaces_whole_files(tmp_path):
    target = tmp_path / "sub" / "result.json"
    atomic_write_bytes(target, b"one")
    atomic_write_bytes(target, b"two")
    assert target.read_bytes() == b"two"
    assert [p.name for p in target.parent.iterdir()] == ["result.json"]
