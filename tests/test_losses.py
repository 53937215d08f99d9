"""Identity losses match their definitions (attacks.md §A.2) on hand-made logits."""

from __future__ import annotations

import math

import torch

from mibench.attacks.losses import (cross_entropy, logit_loss, max_margin, poincare,
                                    top_k_margin)

LOGITS = torch.tensor([[3.0, 1.0, 0.0, -1.0], [0.5, 2.0, 1.5, 0.0]])
LABELS = torch.tensor([0, 2])


def test_cross_entropy_and_logit_loss():
    expected = [-(3 - math.log(sum(math.exp(v) for v in (3, 1, 0, -1)))),
                -(1.5 - math.log(sum(math.exp(v) for v in (0.5, 2, 1.5, 0))))]
    assert torch.allclose(cross_entropy(LOGITS, LABELS), torch.tensor(expected))
    assert torch.equal(logit_loss(LOGITS, LABELS), torch.tensor([-3.0, -1.5]))


def test_margins_use_the_other_classes_only():
    assert torch.equal(max_margin(LOGITS, LABELS), torch.tensor([-3 + 1.0, -1.5 + 2.0]))
    assert torch.allclose(top_k_margin(LOGITS, LABELS, k=2),
                          torch.tensor([-3 + 0.5, -1.5 + 1.25]))
    assert torch.equal(top_k_margin(LOGITS, LABELS, k=0), logit_loss(LOGITS, LABELS))
    assert torch.allclose(top_k_margin(LOGITS, LABELS, k=20),
                          torch.tensor([-3 + 0.0, -1.5 + 2.5 / 3]))


def test_poincare_matches_the_formula_and_prefers_the_target_class():
    u = LOGITS[0] / LOGITS[0].abs().sum()
    v = torch.tensor([1 - 1e-4, 0, 0, 0])
    expected = math.acosh(1 + 2 * (u - v).pow(2).sum() / ((1 - u.pow(2).sum())
                                                           * (1 - v.pow(2).sum())))
    assert math.isclose(poincare(LOGITS, LABELS)[0].item(), expected, rel_tol=1e-5)
    confident = torch.tensor([[10.0, 0.1, 0.1, 0.1]])
    assert poincare(confident, torch.tensor([0])) < poincare(confident, torch.tensor([1]))
