"""A cache shared by several workers: one build of a prior, never a torn read, and still
correct where the filesystem refuses locks."""

from __future__ import annotations

import errno
import fcntl
import subprocess
import sys
import textwrap
import time

import torch

from mibench.cache import MARKER, Cache

# a prior built through the attacks' own path (cached_module); training takes 2 s and fills
# the weights with this process's tag, so the copy that won is recognisable
BUILD_PRIOR = textwrap.dedent("""
    import sys, time
    import torch
    from torch import nn
    from mibench.access import QueryLedger
    from mibench.attack import AttackContext
    from mibench.attacks.priors.cached import WEIGHTS, cached_module
    from mibench.cache import Cache

    ctx = AttackContext(aux=None, cache=Cache(sys.argv[1]), device=torch.device("cpu"), seed=0,
                        ledger=QueryLedger(), data_fingerprint="world")

    def train(module):
        print("training", flush=True)
        time.sleep(2)
        with torch.no_grad():
            module.weight.fill_(float(sys.argv[2]))

    prior = cached_module(ctx, "prior-shared", {"width": 256}, lambda: nn.Linear(256, 256),
                          train)
    print("weight", prior.weight.unique().tolist(), flush=True)
""")


def _entries(root) -> list:
    folder = root / "prior-shared"
    return [p for p in folder.iterdir() if not p.name.startswith(".")] if folder.is_dir() else []


def _read_complete(root) -> list:
    """Load every visible entry; each must be complete and whole."""
    entries = _entries(root)
    for entry in entries:
        assert (entry / MARKER).is_file(), f"{entry} is visible before it is complete"
        state = torch.load(entry / "weights.pt", weights_only=True)
        assert state["weight"].shape == (256, 256) and state["weight"].unique().numel() == 1
    return entries


def test_two_processes_build_one_prior_and_no_reader_sees_it_torn(tmp_path):
    procs = [subprocess.Popen([sys.executable, "-c", BUILD_PRIOR, str(tmp_path), tag],
                              stdout=subprocess.PIPE, text=True) for tag in ("1", "2")]
    polls = 0
    while any(p.poll() is None for p in procs):  # read whatever is visible, as workers would
        _read_complete(tmp_path)
        polls += 1
        time.sleep(0.01)
    assert polls > 20  # the reader looked all through the 2 s build
    assert len(_read_complete(tmp_path)) == 1
    outputs = [p.stdout.read() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sum(out.count("training") for out in outputs) == 1  # the other waited, then loaded
    weights = {out.split("weight", 1)[1].strip() for out in outputs}
    assert len(weights) == 1 and weights <= {"[1.0]", "[2.0]"}
    assert not list((tmp_path / "prior-shared").glob(".tmp-*"))


def test_without_flock_a_builder_that_loses_the_race_keeps_the_winners_copy(tmp_path,
                                                                            monkeypatch):
    def refuse(fh, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", refuse)  # as on an NFS mount without a lock manager
    cache = Cache(tmp_path)

    def slow_loser(path):
        (path / "weights").write_text("loser")
        # meanwhile another machine, unhindered by any lock, completes the same entry
        cache.build("prior", "k", lambda other: (other / "weights").write_text("winner"))

    entry = cache.build("prior", "k", slow_loser)
    assert (entry / "weights").read_text() == "winner" and (entry / MARKER).is_file()
    assert sorted(p.name for p in (tmp_path / "prior").iterdir()) == [".k.lock", "k"]
