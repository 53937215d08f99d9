"""mibench.testing, the plugin test kit: the toy target and context, and the cache assertion."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from mibench.access import Labels, Scores, WhiteBox
from mibench.cache import Cache
from mibench.testing import (ColourTarget, assert_loaded_from_cache, colour_aux, noise_aux,
                             toy_context, toy_split)


def write(path) -> None:
    (path / "weights.pt").write_text("trained")


def test_the_colour_target_knows_red_green_and_blue():
    red_green_blue = torch.eye(3)[:, :, None, None].expand(3, 3, 16, 16) * 0.8 + 0.1
    logits, features = ColourTarget()(red_green_blue)
    assert logits.argmax(1).tolist() == [0, 1, 2] and features.shape == (3, 3)


@pytest.mark.parametrize("access, view", [("whitebox", WhiteBox), ("scores", Scores),
                                          ("labels", Labels)])
def test_toy_context_wraps_the_target_in_the_declared_view(tmp_path, access, view):
    ctx = toy_context(access, cache=tmp_path)
    assert isinstance(ctx.target, view) and ctx.cache.root == tmp_path
    ctx.target.labels(torch.rand(4, 3, 16, 16))
    assert ctx.ledger.counts["forward"] == {"prepare": 4}
    assert ctx.aux_fingerprint == ctx.data_fingerprint == "toy" and not ctx.show_progress


def test_toy_data_is_deterministic():
    assert torch.equal(colour_aux(8).images, colour_aux(8).images)
    assert not torch.equal(colour_aux(8).images, colour_aux(8, seed=1).images)
    images = colour_aux(8, resolution=4).images
    assert images.shape == (8, 3, 4, 4) and (images == images[:, :, :1, :1]).all()  # solid
    aux = noise_aux(12, identities=3)
    assert aux.labels.tolist() == [0, 1, 2] * 4 and aux.identities.min() == 100
    train, test = toy_split(4, 3), toy_split(4, 2, seed=1)
    assert train.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert not torch.equal(train.images[:2], test.images[:2])        # seeded noise differs
    clean = [toy_split(4, n, seed=n, noise=0.0).images for n in (3, 2)]
    assert torch.equal(clean[0][::3], clean[1][::2])                # the identities agree


def test_cache_assertion_passes_when_the_entry_is_loaded(cache):
    key = cache.key("prior-x", {})
    cache.build("prior-x", key, write)
    with assert_loaded_from_cache(cache, "prior-x"):
        path = cache.build("prior-x", key, write)
    assert (path / "weights.pt").read_text() == "trained"
    assert "build" not in vars(cache)                # the guard is gone after the block


def test_cache_assertion_fails_when_the_entry_is_trained(cache):
    with pytest.raises(AssertionError, match=r"cache entry prior-x/\w+ was trained, not loaded"):
        with assert_loaded_from_cache(cache):
            cache.build("prior-x", cache.key("prior-x", {}), write)
    assert cache.lookup("prior-x", cache.key("prior-x", {})) is None   # nothing was built
    assert "build" not in vars(cache)


def test_cache_assertion_checks_only_the_named_component(cache):
    key = cache.key("prior-x", {})
    cache.build("prior-x", key, write)
    with assert_loaded_from_cache(cache, "prior-x"):
        cache.build("prior-x", key, write)
        cache.build("prior-other", key, write)     # another component may still be built
    assert cache.lookup("prior-other", key) is not None


def test_cache_assertion_fails_when_nothing_was_loaded(cache):
    with pytest.raises(AssertionError, match="nothing was loaded from the cache for 'prior-x'"):
        with assert_loaded_from_cache(cache, "prior-x"):
            pass


def test_cache_assertion_sees_entries_written_through_another_cache_object(cache):
    key = cache.key("prior-x", {})
    cache.build("prior-x", key, write)
    with pytest.raises(AssertionError, match=r"cache entries written under .*: prior-x/"):
        with assert_loaded_from_cache(cache, "prior-x"):
            cache.build("prior-x", key, write)
            Cache(cache.root).build("prior-x", cache.key("prior-x", {"new": 1}), write)


def test_nested_cache_assertions_restore_the_outer_guard(cache):
    key = cache.key("prior-x", {})
    cache.build("prior-x", key, write)
    with assert_loaded_from_cache(cache):
        with assert_loaded_from_cache(cache, "prior-x"):
            cache.build("prior-x", key, write)
        with pytest.raises(AssertionError, match="prior-y/"):
            cache.build("prior-y", key, write)     # the outer guard is active again
    assert "build" not in vars(cache)


def test_the_kit_does_not_import_pytest():
    code = "import sys, mibench.testing; assert 'pytest' not in sys.modules, 'pytest imported'"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
