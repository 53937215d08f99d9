"""Shared fixtures: deterministic seeds and a private cache per test."""

from __future__ import annotations

import random

import pytest
import torch

from mibench.cache import Cache


@pytest.fixture(autouse=True)
def _seed(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    random.seed(0)
    torch.manual_seed(0)
    monkeypatch.setenv("MIBENCH_CACHE", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture
def cache(tmp_path) -> Cache:
    return Cache(tmp_path / "cache")
