"""Issue 18.6: the candidate TransF / ScaleFT readings and the 32 → 16 filter, on toy data with
known answers, and wired into FGMIA (default: the centred head rows, Σ = I)."""

from __future__ import annotations

import math

import pytest
import torch

from mibench.attacks.fgmia import FGMIA, FGMIAConfig
from mibench.attacks.fgmia_readings import (identity_radius, keep_best, map_features, scaleft,
                                            transf, within_class_covariance)
from mibench.errors import ConfigError
from mibench.testing import colour_images, toy_context
from mibench.world import UNLABELLED, Split

from test_fgmia import ColourHead


def test_within_class_covariance_known_answer_ignores_unlabelled_rows():
    x = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 1.0], [0.0, 3.0], [9.0, 9.0]])
    y = torch.tensor([0, 0, 1, 1, UNLABELLED])
    assert torch.allclose(within_class_covariance(x, y), torch.eye(2))   # 2·I / (4 − 2)
    with pytest.raises(ConfigError, match="needs identity labels"):
        within_class_covariance(x, torch.full((5,), UNLABELLED))


def test_transf_is_exact_under_lda_with_the_within_class_covariance_only():
    gen = torch.Generator().manual_seed(0)
    classes, per, dim = 4, 50, 3
    centres = 3 * torch.randn(classes, dim, generator=gen)
    y = torch.arange(classes).repeat_interleave(per)
    x = centres[y] + torch.randn(len(y), dim, generator=gen) @ torch.tensor(
        [[1.0, 0.3, 0.0], [0.0, 0.8, 0.2], [0.0, 0.0, 0.5]])
    means = torch.stack([x[y == k].mean(0) for k in range(classes)])
    within = within_class_covariance(x, y)
    head = means @ torch.linalg.inv(within) + 0.7          # LDA rows (+ a constant)
    assert torch.allclose(transf(head, within), means - means.mean(0), atol=1e-4)
    total = torch.cov(x.t())
    assert (transf(head, total) - (means - means.mean(0))).abs().max() > 1.0


def test_identity_radius_is_the_mean_standardised_norm_of_the_identity_means():
    x = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 2.0], [0.0, 2.0]])
    y = torch.tensor([0, 0, 1, 1])
    assert identity_radius(x, y, torch.zeros(2), torch.tensor([1.0, 2.0])) == pytest.approx(1.0)
    assert identity_radius(x, y, torch.tensor([1.0, 0.0]), torch.ones(2)) == pytest.approx(
        (0 + math.sqrt(5)) / 2)


def test_scaleft_radius_puts_the_standardised_offset_at_the_radius():
    gen = torch.Generator().manual_seed(2)
    t = torch.randn(4, 6, generator=gen)
    mean, std = torch.randn(6, generator=gen), torch.rand(6, generator=gen) + 0.5
    u = (scaleft(t, mean, std, 3.0, "radius", radius=1.5) - mean) / std
    assert torch.allclose(u.norm(dim=1), torch.full((4,), 1.5), atol=1e-5)
    with pytest.raises(ConfigError, match="radius"):
        scaleft(t, mean, std, 3.0, "radius")


def test_map_feature_solves_the_one_dimensional_fixed_point():
    """W = [[1], [−1]], μ = 0, Σ = 1: J_0(f) = log σ(2f) − f²/2 peaks where f = 2(1 − σ(2f))."""
    weight = torch.tensor([[1.0], [-1.0]])
    f = map_features(weight, None, torch.zeros(1), torch.eye(1), steps=10)
    lo, hi = 0.0, 2.0
    for _ in range(60):                                     # bisection on f − 2(1 − σ(2f))
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if mid - 2 * (1 - torch.sigmoid(torch.tensor(2 * mid))) < 0 else (lo, mid)
    assert f[0, 0].item() == pytest.approx(lo, abs=1e-5)
    assert f[1, 0].item() == pytest.approx(-lo, abs=1e-5)


def test_map_feature_is_the_fixed_point_with_a_sharp_head():
    gen = torch.Generator().manual_seed(3)
    weight, bias = 20 * torch.randn(5, 4, generator=gen), torch.randn(5, generator=gen)
    mean = torch.randn(4, generator=gen)
    a = torch.randn(4, 4, generator=gen)
    sigma = a @ a.t() / 4 + 0.1 * torch.eye(4)
    f = map_features(weight, bias, mean, sigma, steps=10, chunk=2)
    p = torch.softmax(f @ weight.t() + bias, dim=1)
    fixed = mean + (torch.eye(5) - p) @ weight @ sigma      # f = μ + Σ Wᵀ(e_k − p)
    assert torch.allclose(f, fixed, atol=1e-5)


def test_keep_best_gives_each_identity_its_best_draws():
    drawn = torch.tensor([0, 1, 0, 1, 0, 1])
    scores = torch.tensor([0.1, 0.9, 0.5, 0.2, 0.3, 0.4])
    labels = torch.tensor([1, 0, 1, 0])
    index = keep_best(scores, drawn, labels)
    assert torch.equal(drawn[index], labels)
    assert index.tolist() == [1, 2, 5, 4]                   # 1: 0.9, 0.4; 0: 0.5, 0.3
    with pytest.raises(ConfigError, match="identity 2"):
        keep_best(scores, drawn, torch.tensor([2]))


def labelled_colours(n: int = 96, identities: int = 6) -> Split:
    labels = torch.arange(n) % identities
    return Split("aux", colour_images(n, power=3), labels, labels + 5000)


def config(**overrides) -> FGMIAConfig:
    return FGMIAConfig.resolve("smoke", {"resolution": 16, **overrides})


def test_within_and_radius_readings_use_the_cached_aux_identity_statistics(cache):
    target, aux = ColourHead(), labelled_colours()
    ctx = toy_context(cache=cache, target=target, aux=aux, fingerprint="readings",
                      aux_fingerprint="labelled-colours")
    attack = FGMIA(config(transf_covariance="within", scaleft="radius"))
    attack.prepare(ctx)
    features = target.embed(aux.float_images())
    mean, std = attack.prior.mean, attack.prior.std
    within = within_class_covariance(features, aux.labels)
    radius = identity_radius(features, aux.labels, mean, std)
    expected = scaleft(transf(target.head.weight.detach(), within), mean, std, 0.0, "radius",
                       radius)
    labels = torch.tensor([0, 1, 2])
    assert torch.allclose(attack.identity_conditions(ctx.target, labels), expected, atol=1e-5)
    queries = ctx.ledger.total("forward")
    FGMIA(config(transf_covariance="within")).prepare(ctx)
    assert ctx.ledger.total("forward") == queries           # prior and statistics cached
    default = FGMIAConfig.resolve("smoke")
    assert (default.transf_covariance, default.transf_map, default.scaleft,
            default.oversample) == ("none", False, "moment", 1)      # measured best (18.6)


def test_default_condition_is_the_centred_head_row_at_the_aux_spread(cache):
    target = ColourHead()
    ctx = toy_context(cache=cache, target=target, aux=labelled_colours(), fingerprint="default",
                      aux_fingerprint="labelled-colours")
    attack = FGMIA(config())
    attack.prepare(ctx)
    head = target.head.weight.detach()
    mean, std = attack.prior.mean, attack.prior.std
    expected = scaleft(head - head.mean(0), mean, std, attack.prior.mean_norm.item(), "moment")
    total = scaleft(transf(head, attack.prior.covariance), mean, std, 0.0, "moment")
    labels = torch.tensor([0, 1, 2])
    conditions = attack.identity_conditions(ctx.target, labels)
    assert torch.allclose(conditions, expected, atol=1e-5)
    assert not torch.allclose(conditions, total, atol=1e-3)      # not the old total-Σ reading


def test_map_reading_and_oversampling(cache):
    target = ColourHead()
    ctx = toy_context(cache=cache, target=target, aux=labelled_colours(), fingerprint="map",
                      aux_fingerprint="labelled-colours")
    attack = FGMIA(config(transf_covariance="total", transf_map=True, scaleft="none",
                          oversample=2))
    attack.prepare(ctx)
    mean = attack.prior.mean
    expected = map_features(target.head.weight.detach(), target.head.bias.detach(), mean,
                            attack.prior.covariance, 10) - mean
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    assert torch.allclose(attack.identity_conditions(ctx.target, labels), expected[labels])
    before = ctx.ledger.per_identity("forward")
    with ctx.ledger.scope(labels):
        images = attack.invert(ctx.target, labels, ctx)
    assert images.shape == (6, 3, 16, 16)
    spent = {k: v - before.get(k, 0) for k, v in ctx.ledger.per_identity("forward").items()}
    assert spent == {0: 4, 1: 4, 2: 4}                      # two draws per sample, scored
    kept = attack._scores(ctx.target, images, labels, ctx)
    attack.config.oversample = 1
    first = attack._scores(ctx.target, attack.invert(ctx.target, labels, ctx), labels, ctx)
    for k in range(3):                                      # the draws kept beat the first ones
        assert kept[labels == k].sum() >= first[labels == k].sum() - 1e-6
