"""IF-GMI at smoke size: the L1-ball projection is exact and binds the attack; queries are
exact; the layer-wise optimisation raises the target score."""

from __future__ import annotations

import torch

from mibench.attacks.ifgmi import IFGMI, IFGMIConfig, project_l1_ball
from mibench.attacks.priors.stylegan import candidate_search
from mibench.testing import ColourTarget


def test_projection_onto_the_l1_ball():
    assert project_l1_ball(torch.tensor([[3.0, -1.0]]), 2.0).tolist() == [[2.0, 0.0]]
    assert project_l1_ball(torch.tensor([[0.5, -1.0]]), 2.0).tolist() == [[0.5, -1.0]]
    assert project_l1_ball(torch.tensor([[0.5, -1.0]]), 0.0).tolist() == [[0.0, 0.0]]
    x = torch.randn(8, 3, 4, 4, generator=torch.Generator().manual_seed(1)) * 3
    p = project_l1_ball(x, 5.0)
    assert torch.allclose(p.flatten(1).abs().sum(1), torch.full((8,), 5.0), atol=1e-4)
    assert (p * x >= 0).all()                        # never flips a sign
    # the projection is the nearest point of the ball: closer than other points of the ball
    others = project_l1_ball(x + torch.randn_like(x), 5.0)
    assert ((x - p).flatten(1).norm(dim=1) <= (x - others).flatten(1).norm(dim=1) + 1e-5).all()


def run(ctx, **overrides):
    attack = IFGMI(IFGMIConfig.resolve("smoke", overrides))
    attack.prepare(ctx)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    with ctx.ledger.scope(labels):                  # as the harness calls it
        images = attack.invert(ctx.target, labels, ctx)
    return attack, labels, images


def test_zero_radii_keep_every_stage_at_the_selected_candidate(ctx):
    attack, labels, images = run(ctx, radius_w=(0, 0, 0), radius_features=(0, 0, 0), lr=0.1)
    w = candidate_search(attack.prior, ctx.target, labels, attack.config, ctx)
    with torch.no_grad():
        assert torch.allclose(images, attack.prior.render(w), atol=1e-5)


def test_layerwise_optimisation_counts_queries_and_raises_the_score(ctx):
    attack, labels, images = run(ctx, stage_steps=(10, 5, 5), lr=0.05)
    assert images.shape == (6, 3, 16, 16) and 0 <= images.min() and images.max() <= 1
    assert ctx.ledger.per_identity("gradient") == {0: 40, 1: 40, 2: 40}
    assert ctx.ledger.per_identity("forward") == {0: 46, 1: 46, 2: 46}   # + 3 stage scores
    w = candidate_search(attack.prior, ctx.target, labels, attack.config, ctx)
    with torch.no_grad():
        before = ColourTarget()(attack.prior.render(w))[0].gather(1, labels[:, None])
        after = ColourTarget()(images)[0].gather(1, labels[:, None])
    assert (after >= before - 1e-5).all() and after.mean() > before.mean()
