"""Access views: what each threat model may see, and exact query accounting."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mibench.access import PREPARE, UNATTRIBUTED, Labels, QueryLedger, Scores, WhiteBox, view_for
from mibench.errors import AccessError
from mibench.target import OpenSetTarget, Target


class TinyClosed(Target):
    def __init__(self) -> None:
        super().__init__(num_classes=5, resolution=8, feature_dim=4)
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4))
        self.head = nn.Linear(4, 5)

    def embed(self, x):
        return self.body(x)

    def classify(self, features):
        return self.head(features)


class TinyOpen(OpenSetTarget):
    def __init__(self) -> None:
        super().__init__(num_classes=3, resolution=8, feature_dim=4)
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4))

    def embed(self, x):
        return self.body(x)


def images(n: int, size: int = 8) -> torch.Tensor:
    return torch.rand(n, 3, size, size)


def test_labels_view_refuses_logits_features_and_scores():
    view = Labels(TinyClosed(), QueryLedger())
    for ask in (view.logits, view.features, view.probs, view):
        with pytest.raises(AccessError, match="not available with 'labels' access"):
            ask(images(2))
    out = view.labels(images(3))
    assert out.dtype == torch.int64 and out.shape == (3,)
    assert not hasattr(view, "module") and not hasattr(view, "gallery")


def test_scores_view_returns_probabilities_without_grad():
    view = Scores(TinyClosed(), QueryLedger())
    x = images(4).requires_grad_(True)
    p = view.probs(x)
    assert p.shape == (4, 5) and torch.allclose(p.sum(1), torch.ones(4))
    assert not p.requires_grad and p.grad_fn is None
    with pytest.raises(RuntimeError):
        p.sum().backward()
    with pytest.raises(AccessError):
        view.features(x)


def test_whitebox_gives_differentiable_logits_and_features():
    view = WhiteBox(TinyClosed(), QueryLedger())
    x = images(2).requires_grad_(True)
    logits, feats = view(x)
    (logits.sum() + feats.sum()).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in view.module.parameters())


def test_query_counts_are_exact_for_a_known_sequence():
    ledger = QueryLedger()
    view = WhiteBox(TinyClosed(), ledger)
    view.probs(images(10))                                   # prepare: 10 forward
    with ledger.scope([1, 2]):
        x = images(2).requires_grad_(True)
        view.logits(x).sum().backward()                      # 1 fwd + 1 grad each
        x = images(6).requires_grad_(True)                   # 3 augmentations × 2 identities
        loss = view.logits(x).sum() + view.features(x).sum()  # 2 forward passes of 6
        loss.backward()                                      # one backward through each pass
        view.logits(images(2))                               # no grad: forward only
        view.labels(images(3))                               # does not tile [1, 2]
    with ledger.scope(torch.tensor([4])):
        with torch.no_grad():
            view(images(5).requires_grad_(True))             # grad disabled: forward only
    assert ledger.counts["forward"] == {PREPARE: 10, 1: 1 + 3 + 3 + 1, 2: 1 + 3 + 3 + 1,
                                        UNATTRIBUTED: 3, 4: 5}
    assert ledger.counts["gradient"] == {1: 1 + 6, 2: 1 + 6}
    assert ledger.per_identity("gradient") == {1: 7, 2: 7}
    assert ledger.total("forward") == 10 + 16 + 3 + 5


def test_a_graph_never_backpropagated_costs_no_gradient_query():
    ledger = QueryLedger()
    view = WhiteBox(TinyClosed(), ledger)
    view.logits(images(4).requires_grad_(True))
    assert ledger.total("forward") == 4 and ledger.total("gradient") == 0


def test_gallery_is_whitebox_only_and_a_copy():
    target = TinyOpen()
    target.enrol(torch.eye(3, 4))
    view = WhiteBox(target, QueryLedger())
    gallery = view.gallery
    gallery.zero_()
    assert torch.equal(target.gallery, torch.eye(3, 4))
    with pytest.raises(AccessError, match="closed-set"):
        WhiteBox(TinyClosed(), QueryLedger()).gallery
    logits, _ = view(images(2))
    assert logits.shape == (2, 3) and logits.abs().max() <= 64.0 + 1e-4


def test_views_check_image_shapes_and_unknown_levels():
    view = Scores(TinyClosed(), QueryLedger())
    with pytest.raises(ValueError, match="N×3×H×W"):
        view.probs(torch.rand(3, 8, 8))
    with pytest.raises(AccessError, match="unknown access level"):
        view_for("root", TinyClosed(), QueryLedger())
    assert isinstance(view_for("labels", TinyClosed(), QueryLedger()), Labels)


def test_targets_resize_any_input_to_their_resolution():
    logits, feats = TinyClosed()(images(2, size=32))
    assert logits.shape == (2, 5) and feats.shape == (2, 4)
