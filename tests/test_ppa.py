"""PPA at smoke size: the three stages run, queries are exact, selection keeps the most
confident sample, and the search keeps each identity's best candidates."""

from __future__ import annotations

import torch

from mibench.attacks.ppa import PPA, PPAConfig
from mibench.attacks.priors.stylegan import SEARCH_SEED
from mibench.selection import top_k_per_identity
from mibench.testing import ColourTarget


def test_initial_selection_gives_each_identity_its_best_distinct_candidates():
    scores = torch.tensor([[0.1, 0.9], [0.8, 0.2], [0.5, 0.4], [0.7, 0.6]])
    labels = torch.tensor([0, 1, 0, 1, 0])
    picks = top_k_per_identity(scores, labels)
    assert picks.tolist() == [1, 0, 3, 3, 2]


def test_ppa_runs_counts_queries_and_raises_the_target_score(ctx):
    attack = PPA(PPAConfig.resolve("smoke", {"iterations": 20, "lr": 0.05,
                                             "lr_milestones": (15,)}))
    attack.prepare(ctx)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    with ctx.ledger.scope(labels):                  # as the harness calls it
        images = attack.invert(ctx.target, labels, ctx)
    assert images.shape == (6, 3, 16, 16) and 0 <= images.min() and images.max() <= 1
    cfg = attack.config
    assert ctx.ledger.counts["gradient"] == {0: 40, 1: 40, 2: 40}
    assert ctx.ledger.counts["forward"]["unattributed"] == 2 * cfg.search_space
    assert ctx.ledger.per_identity("forward") == {0: 40, 1: 40, 2: 40}

    z = torch.randn(cfg.search_space, cfg.z_dim, generator=ctx.generator(SEARCH_SEED))
    with torch.no_grad():
        start = attack.prior.render(attack.prior.map(z, cfg.truncation_psi,
                                                     cfg.truncation_cutoff)[:, 0])
        start_best = ColourTarget()(start)[0].max(0).values[labels]
        after = ColourTarget()(images)[0].gather(1, labels[:, None]).flatten()
    assert after.mean() > start_best.mean()


def test_final_selection_keeps_the_most_confident_sample(ctx):
    attack = PPA(PPAConfig.resolve("smoke", {"final_draws": 4}))
    images = torch.stack([torch.full((3, 16, 16), v) for v in (0.2, 0.9, 0.5, 0.5)])
    images[1, 1:] = 0.1                              # sample 1 is red: class 0's best
    images[3, 1] = 0.9                               # sample 3 is green: class 1's best
    labels = torch.tensor([0, 0, 1, 1])
    assert attack.select(ctx.target, images, labels, ctx).tolist() == [1, 3]
    assert ctx.ledger.per_identity("forward") == {0: 8, 1: 8}


def test_paper_preset_is_the_celeba_attack_and_mini_scales_it():
    paper = PPAConfig.resolve("paper")               # configs/attacking/CelebA_FFHQ.yaml
    assert (paper.search_space, paper.iterations, paper.lr_milestones) == (5000, 70, ())
    mini = PPAConfig.resolve("mini")
    assert (mini.search_space, mini.iterations, mini.lr_milestones) == (500, 40, ())

