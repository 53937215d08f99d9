"""Shared fixtures: deterministic seeds, a private cache per test, the toy attack context."""

from __future__ import annotations

import random
from typing import Iterator

import pytest
import torch

from mibench import precision
from mibench.attack import AttackContext
from mibench.cache import Cache
from mibench.testing import toy_context

# Tiny convolutions run far slower with 2 OpenMP threads when the 2 cores are shared (measured
# ~100x on a busy machine); tests use small models, so one thread is both faster and steadier.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[None]:
    """Seeds, a private cache, and this process's precision back to fp32 afterwards (a test
    that configures bf16 must not leak it into the next)."""
    random.seed(0)
    torch.manual_seed(0)
    monkeypatch.setenv("MIBENCH_CACHE", str(tmp_path_factory.mktemp("cache")))
    yield
    precision.configure("fp32", torch.device("cpu"))


@pytest.fixture
def cache(tmp_path) -> Cache:
    return Cache(tmp_path / "cache")


@pytest.fixture
def ctx(cache) -> AttackContext:
    """The toy context of :mod:`mibench.testing`: white-box colour target, noise aux images."""
    return toy_context(cache=cache)


@pytest.fixture(scope="session")
def smoke_cache(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One cache directory for the whole session, so smoke worlds, targets, evaluation models
    and priors are trained once and shared by every end-to-end test."""
    return str(tmp_path_factory.mktemp("smoke-cache"))
