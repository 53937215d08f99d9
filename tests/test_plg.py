"""PLG-MI at smoke size: top-n pseudo-labelling, the cGAN, prior caching per target, exact
queries, and latent optimisation that raises the target score."""

from __future__ import annotations

import pytest
import torch

from mibench.access import Labels, QueryLedger, Scores
from mibench.attack import AttackContext
from mibench.attacks.augment import PLGAugment, colour_jitter, random_rotation
from mibench.attacks.plg import PLG, PLGConfig
from mibench.attacks.priors.cgan import ConditionalGenerator, ProjectionDiscriminator
from mibench.attacks.priors.pseudo_labels import top1_pseudo_labels, top_n_pseudo_labels
from mibench.errors import AccessError, ConfigError
from mibench.testing import (ColourTarget, assert_loaded_from_cache, colour_aux, colour_images,
                             toy_context)


def context(cache, fingerprint: str = "colours", n: int = 48) -> AttackContext:
    return toy_context(cache=cache, aux=colour_aux(n), fingerprint=fingerprint)


def config(**overrides) -> PLGConfig:
    return PLGConfig.resolve("smoke", overrides)


def test_top_n_keeps_each_class_best_aux_images_and_needs_scores():
    images = colour_images(20)
    ledger = QueryLedger()
    index, labels = top_n_pseudo_labels(Scores(ColourTarget(), ledger), images, n=4,
                                        batch_size=7)
    assert labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    logits = ColourTarget()(images.float() / 255)[0]
    for c in range(3):
        best = logits.softmax(1)[:, c].topk(4).indices     # by probability, not by logit
        assert set(index[labels == c].tolist()) == set(best.tolist())
    assert ledger.counts["forward"] == {"prepare": 20}
    with pytest.raises(AccessError, match="probabilities"):
        top_n_pseudo_labels(Labels(ColourTarget(), QueryLedger()), images, n=4)
    top1 = top1_pseudo_labels(Labels(ColourTarget(), QueryLedger()), images)
    assert torch.equal(top1, logits.argmax(1))


def test_cgan_shapes_and_class_conditioning():
    torch.manual_seed(0)
    generator = ConditionalGenerator(num_classes=3, z_dim=8, resolution=16, width=4)
    for bn in generator.modules():
        if hasattr(bn, "shift"):
            torch.nn.init.normal_(bn.shift.weight)
    z = torch.randn(2, 8)
    images = generator.eval()(z, torch.tensor([0, 0]))
    assert images.shape == (2, 3, 16, 16) and images.abs().max() <= 1
    assert not torch.allclose(images, generator(z, torch.tensor([1, 1])))
    critic = ProjectionDiscriminator(num_classes=3, resolution=16, width=4)
    assert critic(images, torch.tensor([0, 2])).shape == (2,)


def test_critic_scores_real_and_fake_in_one_batch_as_apart():
    """The critic step scores real and fake images in one forward: the projection critic has
    no batch statistics, so each image's score is the one it gets alone."""
    torch.manual_seed(0)
    critic = ProjectionDiscriminator(num_classes=3, resolution=16, width=4).eval()
    real, fake = torch.rand(4, 3, 16, 16) * 2 - 1, torch.rand(5, 3, 16, 16) * 2 - 1
    y_real, y_fake = torch.tensor([0, 1, 2, 0]), torch.tensor([2, 2, 1, 0, 1])
    together = critic(torch.cat([real, fake]), torch.cat([y_real, y_fake]))
    apart = torch.cat([critic(real, y_real), critic(fake, y_fake)])
    torch.testing.assert_close(together, apart)


def test_prior_is_cached_per_target_and_counts_training_queries(cache):
    ctx = context(cache)
    cfg = config()
    PLG(cfg).prepare(ctx)
    assert ctx.ledger.counts["forward"] == {"prepare": 48 + cfg.gan_steps * cfg.gan_batch_size}
    assert ctx.ledger.counts["gradient"] == {"prepare": cfg.gan_steps * cfg.gan_batch_size}

    with assert_loaded_from_cache(cache, "prior-plg"):
        PLG(cfg).prepare(ctx)
    with pytest.raises(AssertionError, match="trained, not loaded"):
        with assert_loaded_from_cache(cache, "prior-plg"):
            PLG(cfg).prepare(context(cache, "colours:another-target"))


def test_inversion_counts_queries_and_raises_the_target_score(cache):
    ctx = context(cache)
    attack = PLG(config(iterations=20, lr=0.1, batch_size=4))
    attack.prepare(ctx)
    before = ctx.ledger.total("gradient")
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    images = attack.invert(ctx.target, labels, ctx)
    assert images.shape == (6, 3, 16, 16) and 0 <= images.min() and images.max() <= 1
    assert ctx.ledger.per_identity("gradient") == {0: 80, 1: 80, 2: 80}
    assert ctx.ledger.total("gradient") - before == 6 * 40
    assert torch.equal(images, attack.invert(ctx.target, labels, ctx))   # seeded

    z0 = torch.randn(4, attack.config.z_dim, generator=ctx.generator(0))
    with torch.no_grad():
        start = (attack.generator(z0, labels[:4]) + 1) / 2
        logits = ColourTarget()(torch.cat([start, images[:4]]))[0].gather(
            1, labels[:4].repeat(2)[:, None]).view(2, 4)
    assert logits[1].mean() > logits[0].mean()


@pytest.mark.parametrize("preset", ["smoke", "mini", "paper"])
def test_augmentations_are_the_official_aug_list_at_every_preset(preset):
    """train_cgan.py and reconstruct.py: RandomResizedCrop(0.8–1, ratio 1), ColorJitter(0.2, 0.2;
    p 0.5 in training, kornia's default 1 in the attack), flip, RandomRotation(5) (p 0.5)."""
    attack = PLG(PLGConfig.resolve(preset))
    official = dict(scale=(0.8, 1.0), brightness=0.2, contrast=0.2, flip=0.5, degrees=5.0,
                    rotation_p=0.5)
    cfg = attack.config
    assert attack._augment(cfg.train_jitter_p) == PLGAugment(jitter_p=0.5, **official)
    assert attack._augment(cfg.attack_jitter_p) == PLGAugment(jitter_p=1.0, **official)
    with pytest.raises(ConfigError, match="aug_jitter"):
        PLGConfig.resolve(preset, {"aug_jitter": (0.2,)})


def test_colour_jitter_adds_brightness_and_scales_contrast():
    grey = torch.full((256, 3, 4, 4), 0.5)
    out = colour_jitter(grey, 0.2, 0.2, 1.0, torch.Generator().manual_seed(0))
    values = out[:, 0, 0, 0]
    assert torch.equal(out, values[:, None, None, None].expand_as(out))   # one factor per image
    assert values.min() >= 0.5 * 0.8 - 0.2 - 1e-6 and values.max() <= 0.7 * 1.2 + 1e-6
    assert values.std() > 0.05
    assert torch.equal(colour_jitter(grey, 0.2, 0.2, 0.0, torch.Generator()), grey)
    half = colour_jitter(grey, 0.2, 0.2, 0.5, torch.Generator().manual_seed(0))
    assert 0.3 < (half[:, 0, 0, 0] == 0.5).float().mean() < 0.7


def test_rotation_and_pipeline_are_seeded_differentiable_and_keep_the_size():
    images = torch.rand(64, 3, 16, 16, requires_grad=True)
    rotated = random_rotation(images, 5.0, 0.5, torch.Generator().manual_seed(0))
    moved = (rotated - images).abs().flatten(1).amax(1) > 1e-4
    assert 0.3 < moved.float().mean() < 0.7                      # p 0.5
    assert torch.equal(random_rotation(images, 5.0, 0.0, torch.Generator()), images)
    out = PLGAugment()(images, torch.Generator().manual_seed(1))
    assert out.shape == images.shape
    assert torch.equal(out, PLGAugment()(images, torch.Generator().manual_seed(1)))
    out.sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0
