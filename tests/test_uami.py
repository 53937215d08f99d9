"""UAMI at smoke size: label-only access enforced, top-1 pseudo-labels, the cached CFG prior,
and the label-only filter with exact label queries."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from mibench.access import Labels
from mibench.attack import AttackContext
from mibench.attacks.uami import UAMI, UAMIConfig
from mibench.errors import AccessError
from mibench.store import Store
from mibench.testing import ColourTarget, assert_loaded_from_cache, colour_aux, toy_context

PROTOTYPES = ColourTarget().prototypes


def solid(colours: torch.Tensor) -> torch.Tensor:
    return colours[:, :, None, None].expand(len(colours), 3, 16, 16).contiguous()


@pytest.fixture
def ctx(cache) -> AttackContext:
    return toy_context(UAMI.spec.access, cache=cache, aux=colour_aux(48),   # as the harness
                       fingerprint="colours", aux_fingerprint="colours")


def config(**overrides) -> UAMIConfig:
    return UAMIConfig.resolve("smoke", overrides)


def test_uami_gets_a_label_only_view_that_refuses_scores(ctx):
    assert UAMI.spec.access == "labels" and isinstance(ctx.target, Labels)
    x = torch.rand(2, 3, 16, 16)
    for query in (ctx.target.probs, ctx.target.logits, ctx.target.features, ctx.target):
        with pytest.raises(AccessError, match="'labels' access"):
            query(x)


def test_prior_trains_on_top1_labels_once_with_label_queries_only(ctx):
    UAMI(config()).prepare(ctx)
    assert ctx.ledger.counts["forward"] == {"prepare": 48}      # one label per aux image
    assert ctx.ledger.total("gradient") == 0
    assert len(list((ctx.cache.root / "prior-uami").iterdir())) >= 1

    with assert_loaded_from_cache(ctx.cache, "prior-uami"):
        UAMI(config()).prepare(ctx)


def test_filter_returns_candidates_labelled_as_the_identity_first(ctx):
    attack = UAMI(config(candidates=3))
    attack.prepare(ctx)
    before = ctx.ledger.total("forward")
    labels = torch.tensor([0, 0, 1, 1, 2])

    def sample(tiled, generator, guidance_scale=None):
        # draw 0: the next class's colour (a miss); draws 1, 2: the right colour, brighter
        draw = torch.arange(len(tiled)) // len(labels)
        wrong = (tiled + (draw == 0).long()) % 3
        return solid(PROTOTYPES[wrong] * (0.9 + 0.05 * draw[:, None]))

    attack.prior.sample = sample
    images = attack.invert(ctx.target, labels, ctx)
    predicted = ColourTarget()(images)[0].argmax(1)
    assert torch.equal(predicted, labels)
    assert torch.allclose(images[:, :, 0, 0].max(1).values, torch.full((5,), 0.9 * 0.95))
    assert ctx.ledger.per_identity("forward") == {0: 6, 1: 6, 2: 3}   # 3 labels per sample
    assert ctx.ledger.total("forward") - before == 15

    unfiltered = UAMI(config(filter=False))
    unfiltered.prior = attack.prior
    assert ColourTarget()(unfiltered.invert(ctx.target, labels, ctx))[0].argmax(1).ne(
        labels).all()
    assert ctx.ledger.total("forward") - before == 15            # no queries without filter


def test_sampling_is_seeded_and_in_range(ctx):
    attack = UAMI(config())
    attack.prepare(ctx)
    labels = torch.tensor([0, 1, 2, 2])
    images = attack.invert(ctx.target, labels, ctx)
    assert images.shape == (4, 3, 16, 16) and 0 <= images.min() and images.max() <= 1
    assert torch.equal(images, attack.invert(ctx.target, labels, ctx))
    assert attack.select(ctx.target, images, labels, ctx).shape == (3,)


@pytest.mark.slow
def test_the_harness_runs_uami_label_only_and_records_its_label_queries(tmp_path, smoke_cache):
    """End to end at smoke size: the cell finishes under the Labels view, with label queries
    only (|aux| to label the prior's data; per identity 2 samples × 2 candidates + 2 for the
    protocol's selection)."""
    cmd = [sys.executable, "-m", "mibench", "run", "--preset", "smoke", "--identities", "2",
           "--samples", "2", "--attacks", "uami", "--targets", "arcface", "--cache-dir",
           smoke_cache, "--results-dir", str(tmp_path / "runs"), "--quiet"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    store = Store(tmp_path / "runs")
    (run_id,) = store.run_ids()
    (cell,) = store.cells(run_id)
    assert cell["status"] == "done"
    ledger = cell["queries"]["ledger"]
    assert ledger["gradient"] == {}
    assert ledger["forward"]["0"] == ledger["forward"]["1"] == 2 * 2 + 2
    assert ledger["forward"]["prepare"] > 0
