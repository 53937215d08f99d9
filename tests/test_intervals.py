"""Intervals over identities, KID and PRDC: known answers, coverage, the store round trip.

Contexts here use ``test_metrics``' mean-colour models (3-d features) and a mean-pool stand-in
for Inception, so FID and KID run without the Inception weights.
"""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_metrics import MeanColour, private_split

from mibench.metrics import fid as fid_module
from mibench.metrics import PrivateReference, measure
from mibench.metrics.bootstrap import (HALF_SAMPLE, PERCENTILE, IntervalConfig, centred_interval,
                                       combine, from_row, half_sample_index, interval,
                                       percentile_interval, resample_index, to_row)
from mibench.metrics.base import FeatureSets
from mibench.metrics.context import EvalContext
from mibench.metrics.kid import kernel_inception_distance, polynomial_kernel, subset_mmd2
from mibench.metrics.prdc import prdc
from mibench.registry import METRICS
from mibench.store import CellKey, Store

IDENTITIES = 6


class Pool(torch.nn.Module):
    """Stands in for pytorch-fid's InceptionV3: the mean colour, as [N×3×1×1]."""

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [F.adaptive_avg_pool2d(x, 1)]


def colours(centres: torch.Tensor, per: int, spread: float, seed: int) -> torch.Tensor:
    """``per`` constant-colour 8 px images around each centre (rows of ``centres``)."""
    noise = torch.randn(centres.shape[0] * per, 3, generator=torch.Generator().manual_seed(seed))
    values = (centres.repeat_interleave(per, 0) + spread * noise).clamp(0, 1)
    return values.view(-1, 3, 1, 1).expand(-1, 3, 8, 8).contiguous()


@pytest.fixture
def ctx(monkeypatch) -> EvalContext:
    monkeypatch.setattr(fid_module, "load_fid_inception", lambda device: Pool())
    centres = torch.rand(IDENTITIES, 3, generator=torch.Generator().manual_seed(0)) * 0.6 + 0.2
    private = colours(centres, 6, 0.05, seed=1)
    labels = list(range(IDENTITIES))
    reference = PrivateReference(private_split(private, [i for i in labels for _ in range(6)]),
                                 MeanColour(centres))
    generated = colours(centres, 5, 0.15, seed=2)
    return EvalContext(generated, torch.arange(IDENTITIES).repeat_interleave(5),
                       target=MeanColour(centres), private=reference)


def test_percentile_and_half_sample_intervals_cover_a_known_mean_95_percent_of_the_time():
    n, repeats, hits = 30, 200, {PERCENTILE: 0, HALF_SAMPLE: 0}
    resampled, halves = resample_index(n, 500, seed=0), half_sample_index(n, 500, seed=0)
    generator = torch.Generator().manual_seed(1)
    for _ in range(repeats):
        values = 2.0 + torch.randn(n, generator=generator, dtype=torch.float64)
        low, high = percentile_interval(values[resampled].mean(1), 0.95)
        hits[PERCENTILE] += low <= 2.0 <= high
        low, high = centred_interval(values.mean().item(), values[halves].mean(1), n, 0.95)
        hits[HALF_SAMPLE] += low <= 2.0 <= high
    for method, hit in hits.items():
        assert 0.88 <= hit / repeats <= 0.99, (method, hit)


def test_half_samples_are_without_replacement_and_resamples_with():
    halves = half_sample_index(7, 50, seed=3)
    assert halves.shape == (50, 3) and all(len(set(row.tolist())) == 3 for row in halves)
    assert torch.equal(halves, half_sample_index(7, 50, seed=3))       # seeded
    drawn = resample_index(7, 200, seed=3)
    assert any(len(set(row.tolist())) < 7 for row in drawn)           # duplicates occur


def test_kid_known_answer_self_and_shift():
    x, y = torch.tensor([[0.0], [1.0]]), torch.tensor([[2.0], [3.0]])
    # k(a,b) = (ab + 1)³: within x 1, within y 343, between 1 + 1 + 27 + 64 = 93
    mean, std, size = kernel_inception_distance(x, y, subsets=1)
    assert (mean, std, size) == (pytest.approx(1 + 343 - 2 * 93 / 4), 0.0, 2)
    generator = torch.Generator().manual_seed(0)
    a, b = torch.randn(200, 16, generator=generator), torch.randn(200, 16, generator=generator)
    same, _, _ = kernel_inception_distance(a, b, subset_size=100)
    shifted, spread, _ = kernel_inception_distance(a, b + 1.0, subset_size=100)
    assert abs(same) < 0.02 * shifted and shifted > 0 and spread > 0
    assert abs(kernel_inception_distance(a, a, subset_size=100)[0]) < 0.02 * shifted


def test_subset_mmd2_equals_the_unbiased_estimate_of_each_subset():
    generator = torch.Generator().manual_seed(1)
    x, y = torch.randn(9, 4, generator=generator), torch.randn(12, 4, generator=generator) + 0.5
    kernels = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    x_index = torch.stack([torch.randperm(9, generator=generator)[:5] for _ in range(3)])
    y_index = torch.stack([torch.randperm(12, generator=generator)[:5] for _ in range(3)])
    got = subset_mmd2(*kernels, x_index, y_index)
    for row, (xs, ys) in enumerate(zip(x_index, y_index)):
        a, b = x[xs].double(), y[ys].double()
        k_aa, k_bb, k_ab = ((u @ v.t() / 4 + 1) ** 3 for u, v in ((a, a), (b, b), (a, b)))
        expected = ((k_aa.sum() - k_aa.trace()) / 20 + (k_bb.sum() - k_bb.trace()) / 20
                    - 2 * k_ab.mean())
        assert got[row].item() == pytest.approx(expected.item(), rel=1e-12)


@pytest.mark.parametrize("name", ["fid", "kid"])
def test_a_resample_of_identities_slices_the_root_products_to_the_same_value(name):
    """The half-sample replicates slice the root's pairwise matrices (issue 23.9): each gives
    the value of feature sets built from the resampled rows alone."""
    generator = torch.Generator().manual_seed(2)
    sets = FeatureSets(torch.rand(40, 8, generator=generator), torch.arange(10).repeat(4),
                       torch.rand(60, 8, generator=generator), torch.arange(10).repeat(6))
    statistic = METRICS.get(name).statistic
    statistic(sets)  # fills the root's products
    for identities in (torch.tensor([0, 3, 4, 9]), torch.tensor([1, 2, 5, 6, 7])):
        sliced = sets.of(identities)
        fresh = FeatureSets(sliced.generated.clone(), sliced.generated_labels.clone(),
                            sliced.private.clone(), sliced.private_labels.clone())
        assert sliced._root is sets and fresh._root is None
        assert statistic(sliced).value == pytest.approx(statistic(fresh).value, rel=1e-9)


def test_prdc_known_answer_and_identical_sets():
    real, fake = torch.tensor([[0.0], [1.0], [2.0], [3.0], [4.0]]), torch.tensor([[0.5], [10.0]])
    got = prdc(real, fake, k=1)
    assert (got.precision, got.recall, got.density, got.coverage) == (0.5, 1.0, 1.0, 0.4)
    points = torch.randn(20, 8, generator=torch.Generator().manual_seed(0))
    same = prdc(points, points)
    assert (same.precision, same.recall, same.coverage) == (1.0, 1.0, 1.0)
    assert same.density == pytest.approx(1.0)
    assert prdc(points, points[:3]).recall is None                    # 3 points: no 3-NN balls


def test_prdc_agrees_with_the_prdc_package():
    package = pytest.importorskip("prdc")
    generator = torch.Generator().manual_seed(5)
    real, fake = torch.randn(40, 6, generator=generator), torch.randn(30, 6, generator=generator)
    theirs = package.compute_prdc(real.numpy(), fake.numpy() + 0.3, nearest_k=3)
    mine = prdc(real, fake + 0.3)
    for name, value in theirs.items():
        assert getattr(mine, name) == pytest.approx(float(value)), name


def test_every_interval_holds_its_value_and_set_intervals_are_centred(ctx):
    names = ["eval_acc1", "knn_l2", "fid", "kid", "precision", "density", "coverage", "recall"]
    for value in measure(ctx, names):
        assert value.value is not None, value
        iv = interval(METRICS.get(value.name), ctx, value)
        assert iv.low <= value.value <= iv.high, iv
        assert iv.identities == IDENTITIES and iv.seed == IntervalConfig().seed
        if value.name in ("fid", "kid"):
            assert iv.method == HALF_SAMPLE and len(iv.replicates) == 200
            assert iv.low + iv.high == pytest.approx(2 * value.value)  # centred on the value
            assert iv.detail["generated"] == 30 and iv.detail["private"] == 36
        else:
            assert iv.method == PERCENTILE and len(iv.replicates) == 1000
    kid = measure(ctx, ["kid"])[0]
    assert kid.detail["subset_size"] == 30 and kid.detail["std"] > 0


def test_per_identity_bootstrap_reproduces_the_value_and_one_identity_has_no_interval(ctx):
    value = measure(ctx, ["knn_l2"])[0]
    iv = interval(METRICS.get("knn_l2"), ctx, value)
    assert iv.replicates.mean() == pytest.approx(value.value, rel=0.05)
    assert interval(METRICS.get("knn_l2"), ctx, value).low == iv.low            # seeded
    one = ctx.subset(ctx.labels == 0)
    alone = interval(METRICS.get("knn_l2"), one, measure(one, ["knn_l2"])[0])
    assert alone.low is None and "one attacked identity" in alone.reason


def test_seeds_combine_by_averaging_aligned_replicates(ctx):
    value = measure(ctx, ["fid"])[0]
    iv = interval(METRICS.get("fid"), ctx, value)
    assert combine([value.value], [iv]) == (iv.low, iv.high)
    low, high = combine([value.value, value.value], [iv, iv])
    assert (low, high) == (pytest.approx(iv.low), pytest.approx(iv.high))
    other = interval(METRICS.get("fid"), ctx, value, IntervalConfig(seed=1))
    assert combine([value.value] * 2, [iv, other]) is None             # drawn differently


def test_intervals_round_trip_the_store_and_old_databases_gain_the_table(ctx, tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    with sqlite3.connect(old / "mibench.db") as db:
        db.execute("CREATE TABLE runs (run_id TEXT PRIMARY KEY, created REAL NOT NULL, "
                   "config TEXT NOT NULL, versions TEXT NOT NULL, device TEXT NOT NULL, "
                   "command TEXT NOT NULL)")
    store = Store(old)
    assert store.intervals("r1") == []
    key = CellKey("r1", "gmi", "arcface-18", "similar", 0)
    store.create_run("r1", {}, {}, "cpu", "mibench run")
    store.add_cells([key])
    store.start_cell(key)
    value = measure(ctx, ["kid"])[0]
    iv = interval(METRICS.get("kid"), ctx, value)
    store.finish_cell(key, [("all", "kid", value.value, None)], {}, {}, "",
                      (to_row("all", iv),))
    [row] = store.intervals("r1")
    back = from_row(row)
    assert (back.low, back.high, back.method, back.detail) == (iv.low, iv.high, iv.method,
                                                               dict(iv.detail))
    assert np.allclose(back.replicates, iv.replicates, rtol=1e-6)
    store.start_cell(key)                                              # a redo clears them
    assert store.intervals("r1") == []
