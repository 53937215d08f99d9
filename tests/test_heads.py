"""Margin heads match their formulas; batch-hard mining picks the hardest pairs."""

from __future__ import annotations

import math

import pytest
import torch

from mibench.targets.heads import (ArcFaceHead, CosFaceHead, batch_hard_mining,
                                   squared_distances, triplet_loss)


def unit(degrees: float) -> list[float]:
    return [math.cos(math.radians(degrees)), math.sin(math.radians(degrees))]


def axis_head(head_type: type, **kwargs: float) -> ArcFaceHead | CosFaceHead:
    """Two classes whose centres are the x and y axes."""
    head = head_type(2, 2, **kwargs)
    with torch.no_grad():
        head.weight.copy_(torch.eye(2) * 3.0)  # norms must not matter
    return head


def test_arcface_adds_the_angular_margin_to_the_true_class() -> None:
    head = axis_head(ArcFaceHead)
    features = torch.tensor([unit(60.0)]) * 7.0
    logits = head(features, torch.tensor([0]))
    expected_true = 64.0 * math.cos(math.radians(60.0) + 0.5)
    expected_other = 64.0 * math.cos(math.radians(30.0))
    assert logits[0, 0].item() == pytest.approx(expected_true, abs=1e-4)
    assert logits[0, 1].item() == pytest.approx(expected_other, abs=1e-4)


def test_arcface_falls_back_when_theta_plus_m_passes_pi() -> None:
    head = axis_head(ArcFaceHead, scale=10.0, margin=0.5)
    features = torch.tensor([unit(170.0)])  # θ = 170° to the x axis: θ + m > π
    logits = head(features, torch.tensor([0]))
    cos = math.cos(math.radians(170.0))
    assert logits[0, 0].item() == pytest.approx(10.0 * (cos - 0.5 * math.sin(0.5)), abs=1e-4)


def test_cosface_subtracts_the_cosine_margin() -> None:
    head = axis_head(CosFaceHead)
    features = torch.tensor([unit(60.0), unit(20.0)])
    logits = head(features, torch.tensor([1, 0]))
    assert logits[0, 1].item() == pytest.approx(64.0 * (math.cos(math.radians(30.0)) - 0.35),
                                                abs=1e-4)
    assert logits[0, 0].item() == pytest.approx(64.0 * 0.5, abs=1e-4)
    assert logits[1, 0].item() == pytest.approx(64.0 * (math.cos(math.radians(20.0)) - 0.35),
                                                abs=1e-4)


@pytest.mark.parametrize("head_type", [ArcFaceHead, CosFaceHead])
def test_without_labels_heads_give_scaled_cosines(head_type: type) -> None:
    head = axis_head(head_type)
    features = torch.tensor([unit(45.0)])
    assert torch.allclose(head(features), torch.full((1, 2), 64.0 * math.cos(math.pi / 4)))


def test_arcface_gradient_is_finite_on_the_class_centre() -> None:
    head = axis_head(ArcFaceHead)
    features = torch.tensor([unit(0.0)], requires_grad=True)
    head(features, torch.tensor([0])).sum().backward()
    assert torch.isfinite(features.grad).all() and torch.isfinite(head.weight.grad).all()


def test_batch_hard_mining_picks_farthest_positive_and_nearest_negative() -> None:
    # Angles on the circle; labels: 0 0 0 1 1 2 (the lone 2 has no positive).
    embeddings = torch.tensor([unit(a) for a in (0.0, 10.0, 50.0, 30.0, 100.0, 200.0)])
    labels = torch.tensor([0, 0, 0, 1, 1, 2])
    positive, negative, valid = batch_hard_mining(squared_distances(embeddings), labels)
    assert positive[:5].tolist() == [2, 2, 0, 4, 3]
    assert negative[:5].tolist() == [3, 3, 3, 1, 2]
    assert valid.tolist() == [True, True, True, True, True, False]


def test_triplet_loss_value_by_hand() -> None:
    embeddings = torch.tensor([unit(0.0), unit(60.0), unit(90.0)])  # anchors 0,1 share a label
    labels = torch.tensor([0, 0, 1])

    def d(a: float, b: float) -> float:
        return 2.0 - 2.0 * math.cos(math.radians(a - b))

    gaps = [d(0, 60) - d(0, 90) + 0.2, d(60, 0) - d(60, 90) + 0.2]
    expected = sum(max(0.0, g) for g in gaps) / 2  # the label-1 anchor has no positive
    assert triplet_loss(embeddings, labels, 0.2).item() == pytest.approx(expected, abs=1e-5)


def test_triplet_loss_needs_a_positive_pair() -> None:
    with pytest.raises(ValueError, match="P×K"):
        triplet_loss(torch.randn(3, 4), torch.tensor([0, 1, 2]))
