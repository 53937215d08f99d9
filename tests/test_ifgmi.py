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


def stage_images_without_skip(prior, w, stages):
    """Each stage's image from the unchanged w, blocks before the stage computed one by one
    and their RGB images left out (IF-GMI's SynthesisNetwork with start_layer = stage)."""
    ws = prior.broadcast(w)
    out, features = [prior.render(w)], None
    for stage in range(1, stages):
        block = prior.blocks[stage - 1]
        features = block(None if features is None else (features, None),
                         ws[:, 2 * stage - 2:2 * stage])[0]
        rest = prior.synthesise(ws, stage, (features, None))
        out.append(prior.image(rest))
    return out


def test_zero_radii_keep_each_stage_at_the_candidate_with_the_skip_image_dropped(ctx):
    attack, labels, images = run(ctx, radius_w=(0, 0, 0), radius_features=(0, 0, 0), lr=0.1)
    w = candidate_search(attack.prior, ctx.target, labels, attack.config, ctx)
    with torch.no_grad():
        stages = stage_images_without_skip(attack.prior, w, 3)
        scores = torch.stack([ColourTarget()(x)[0].softmax(1).gather(1, labels[:, None]).flatten()
                              for x in stages])
        best = scores.argmax(0)
        expected = torch.stack([stages[s][i] for i, s in enumerate(best.tolist())])
        # the stages' images differ: dropping the skip image changes what a stage starts from
        assert not torch.allclose(stages[0], stages[1], atol=1e-3)
    assert (best > 0).any()                          # a later stage wins for some sample
    assert torch.allclose(images, expected, atol=1e-5)


def test_stages_after_the_first_start_without_the_skip_image(ctx, monkeypatch):
    attack = IFGMI(IFGMIConfig.resolve("smoke", {"stage_steps": (1, 1, 1)}))
    attack.prepare(ctx)
    starts = []
    synthesise = attack.prior.synthesise

    def spy(ws, start=0, state=None, stop=None):
        starts.append((start, None if state is None else state[1]))
        return synthesise(ws, start, state, stop)

    monkeypatch.setattr(attack.prior, "synthesise", spy)
    labels = torch.tensor([0, 1])
    with ctx.ledger.scope(labels):
        attack.invert(ctx.target, labels, ctx)
    assert {start for start, _ in starts} >= {1, 2}
    assert all(skip is None for start, skip in starts if start > 0)


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
