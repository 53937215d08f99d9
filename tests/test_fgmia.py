"""FGMIA at smoke size: TransF/ScaleFT maths, the ablation switches, prior caching, queries,
selection, and a two-colour world where the feature condition must steer the samples."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mibench.attack import AttackContext
from mibench.attacks.fgmia import FGMIA, FGMIAConfig
from mibench.attacks.fgmia_readings import scaleft, transf
from mibench.attacks.priors.cached import cached_module
from mibench.attacks.priors.diffusion import ConditionalDenoiser
from mibench.errors import CacheError
from mibench.registry import ATTACKS
from mibench.target import OpenSetTarget, Target
from mibench.testing import assert_loaded_from_cache, colour_aux, noise_aux, toy_context
from mibench.world import Split


class ColourHead(Target):
    """Closed set: feature = mean colour, logits = a linear head over 3 colour classes."""

    def __init__(self) -> None:
        super().__init__(num_classes=3, resolution=16, feature_dim=3, mean=(0, 0, 0),
                         std=(1, 1, 1))
        self.head = torch.nn.Linear(3, 3)
        with torch.no_grad():
            self.head.weight.copy_(10 * torch.eye(3) - 5)
            self.head.bias.zero_()

    def embed(self, x):
        return x.mean(dim=(2, 3))

    def classify(self, features):
        return self.head(features)

    def linear_head(self):
        return self.head


class ColourGallery(OpenSetTarget):
    """Open set: feature = centred mean colour; gallery = red, green, blue."""

    def __init__(self) -> None:
        super().__init__(num_classes=3, resolution=16, feature_dim=3, mean=(0, 0, 0),
                         std=(1, 1, 1), scale=10.0)
        self.enrol(torch.eye(3) - 1 / 3)

    def embed(self, x):
        colour = x.mean(dim=(2, 3))
        return colour - colour.mean(dim=1, keepdim=True)


def context(target, cache, n: int = 96) -> AttackContext:
    """Aux images of one random saturated colour each (16 px)."""
    return toy_context(cache=cache, target=target, aux=colour_aux(n, power=3),
                       fingerprint=f"colours:{type(target).__name__}", aux_fingerprint="colours")


def cached(cache, component: str) -> list[str]:
    return [p.name for p in (cache.root / component).iterdir() if not p.name.startswith(".")]


def config(**overrides) -> FGMIAConfig:
    return FGMIAConfig.resolve("smoke", {"resolution": 16, **overrides})


def test_transf_row_maximises_the_margin_over_the_mean_class():
    gen = torch.Generator().manual_seed(1)
    head = torch.randn(5, 8, generator=gen)
    directions = transf(head)
    k = 2

    def margin(f):
        logits = f @ head.t()
        return logits[..., k] - logits.mean(-1)

    best = margin(F.normalize(directions[k], dim=0))
    random_units = F.normalize(torch.randn(2000, 8, generator=gen), dim=1)
    assert margin(random_units).max() < best
    assert torch.allclose(directions.sum(0), torch.zeros(8), atol=1e-5)


def test_transf_with_the_shared_covariance_recovers_lda_class_means():
    gen = torch.Generator().manual_seed(4)
    means = torch.randn(5, 6, generator=gen)
    a = torch.randn(6, 6, generator=gen)
    covariance = a @ a.t() + 0.5 * torch.eye(6)
    head = means @ torch.linalg.inv(covariance) + torch.randn(6, generator=gen)  # LDA rows
    assert torch.allclose(transf(head, covariance), means - means.mean(0), atol=1e-4)


def test_scaleft_modes():
    gen = torch.Generator().manual_seed(2)
    t = torch.randn(4, 6, generator=gen)
    mean, std = torch.randn(6, generator=gen), torch.rand(6, generator=gen) + 0.5
    assert torch.equal(scaleft(t, mean, std, 3.0, "none"), t)
    assert torch.allclose(scaleft(t, mean, std, 3.0, "norm").norm(dim=1), torch.full((4,), 3.0))
    moment = scaleft(t, mean, std, 3.0, "moment")
    u = (moment - mean) / std                     # standardised coordinates
    assert torch.allclose(u.norm(dim=1), torch.full((4,), math.sqrt(6)), atol=1e-5)
    assert torch.allclose(F.cosine_similarity(u, t / std, dim=1), torch.ones(4), atol=1e-5)


def test_ablations_are_registered_with_their_switch():
    cases = {"fgmia-no-fg": ("condition", "logits"), "fgmia-no-transf": ("transf", False),
             "fgmia-no-scaleft": ("scaleft", "none")}
    full = FGMIAConfig()
    for name, (field, value) in cases.items():
        cfg = ATTACKS.get(name).Config()
        assert getattr(cfg, field) == value != getattr(full, field)
        assert ATTACKS.get(name).spec.name == name
        differing = [k for k, v in cfg.to_dict().items() if v != full.to_dict()[k]]
        assert differing == [field]


def test_guidance_needs_condition_dropout():
    with pytest.raises(Exception, match="condition_dropout"):
        FGMIAConfig(guidance_scale=2.0)


def test_conditions_follow_each_switch(cache):
    target = ColourHead()
    ctx = context(target, cache)
    full = FGMIA(config())
    full.prepare(ctx)
    labels = torch.tensor([0, 1, 2])
    raw = target.head.weight.detach()
    prior = full.prior
    assert torch.allclose(prior.covariance, prior.covariance.t())
    expected = scaleft(transf(raw), prior.mean, prior.std, prior.mean_norm.item(), "moment")
    assert torch.allclose(full.identity_conditions(ctx.target, labels), expected)

    no_scale = ATTACKS.get("fgmia-no-scaleft")(ATTACKS.get("fgmia-no-scaleft").Config.resolve(
        "smoke", {"resolution": 16}))
    no_scale.prepare(ctx)
    assert torch.allclose(no_scale.identity_conditions(ctx.target, labels), transf(raw))

    no_transf_cls = ATTACKS.get("fgmia-no-transf")
    no_transf = no_transf_cls(no_transf_cls.Config.resolve("smoke", {"resolution": 16}))
    no_transf.prepare(ctx)
    assert torch.allclose(no_transf.identity_conditions(ctx.target, labels),
                          scaleft(raw, prior.mean, prior.std, prior.mean_norm.item(), "moment"))

    no_fg_cls = ATTACKS.get("fgmia-no-fg")
    no_fg = no_fg_cls(no_fg_cls.Config.resolve("smoke", {"resolution": 16}))
    no_fg.prepare(ctx)
    assert no_fg.prior.denoiser.condition_dim == target.num_classes  # logits, not features
    assert no_fg.identity_conditions(ctx.target, labels).shape == (3, 3)


def test_prior_is_cached_per_target_and_shared_by_the_feature_ablations(cache):
    ctx = context(ColourHead(), cache)
    FGMIA(config()).prepare(ctx)
    assert ctx.ledger.total("forward") == 192         # each aux image and its mirror
    assert len(cached(cache, "prior-fgmia")) == len(cached(cache, "prior-autoencoder")) == 1

    for name in ("fgmia-no-transf", "fgmia-no-scaleft"):
        cls = ATTACKS.get(name)
        with assert_loaded_from_cache(cache, "prior-fgmia"):
            cls(cls.Config.resolve("smoke", {"resolution": 16})).prepare(ctx)
    with pytest.raises(AssertionError, match="trained, not loaded"):
        with assert_loaded_from_cache(cache, "prior-fgmia"):
            FGMIA(config()).prepare(context(ColourGallery(), cache))   # another target: retrains


class LeftHalfHead(ColourHead):
    """Closed set: feature = mean colour of the image's left half (changes under a flip)."""

    def embed(self, x):
        return x[..., : x.shape[-1] // 2].mean(dim=(2, 3))


def test_mirror_images_are_trained_with_their_own_features(cache):
    target, aux = LeftHalfHead(), noise_aux(32, resolution=16)
    images = aux.float_images()
    own = torch.cat([target.embed(images), target.embed(images.flip(-1))])
    for flip, features in ((True, own), (False, own[:32])):
        ctx = toy_context(cache=cache, target=target, aux=aux, fingerprint=f"left:{flip}",
                          aux_fingerprint="noise")
        attack = FGMIA(config(flip=flip))
        attack.prepare(ctx)
        assert ctx.ledger.total("forward") == len(features)
        assert torch.allclose(attack.prior.covariance, torch.cov(features.t()), atol=1e-5)
        assert torch.allclose(attack.prior.mean, features.mean(0), atol=1e-5)


def test_sampling_makes_no_queries_and_selection_one_per_sample(cache):
    ctx = context(ColourGallery(), cache)
    attack = FGMIA(config())
    attack.prepare(ctx)
    before = ctx.ledger.total("forward")
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    with ctx.ledger.scope(labels):
        images = attack.invert(ctx.target, labels, ctx)
        assert ctx.ledger.total("forward") == before and ctx.ledger.total("gradient") == 0
        picked = attack.select(ctx.target, images, labels, ctx)
    assert images.shape == (6, 3, 16, 16) and 0 <= images.min() and images.max() <= 1
    assert ctx.ledger.per_identity("forward") == {0: 3, 1: 3}
    again = attack.invert(ctx.target, labels, ctx)
    assert torch.equal(images, again)                 # seeded: reproducible
    features = F.normalize(ColourGallery().embed(images), dim=1)
    scores = (features * ColourGallery().gallery[labels]).sum(1)
    assert picked.tolist() == [int(scores[:3].argmax()), 3 + int(scores[3:].argmax())]


def test_feature_condition_steers_the_samples(cache):
    """Aux images are red or blue; the prior must learn p(x | feature): conditioning on the
    red template gives red images and on the blue one blue images (8 px, pixel space)."""
    gen = torch.Generator().manual_seed(3)
    red, blue = torch.tensor([0.9, 0.1, 0.1]), torch.tensor([0.1, 0.1, 0.9])
    colours = torch.where(torch.arange(128)[:, None] % 2 == 0, red, blue)
    colours = (colours + 0.05 * torch.randn(128, 3, generator=gen)).clamp(0, 1)
    ctx = context(ColourGallery(), cache)
    ctx.aux = Split("aux", (colours[:, :, None, None].expand(128, 3, 8, 8) * 255)
                    .to(torch.uint8).contiguous(), torch.arange(128), torch.arange(128) + 100)
    attack = FGMIA(config(space="pixel", resolution=8, attention=(False, True),
                          train_steps=200, batch_size=32, lr=2e-3, sampler_steps=10,
                          max_ema_decay=0.95))
    attack.prepare(ctx)
    labels = torch.tensor([0] * 6 + [2] * 6)                 # gallery: 0 = red, 2 = blue
    mean = attack.invert(ctx.target, labels, ctx).mean(dim=(2, 3))
    assert (mean[:6, 0] - mean[:6, 2]).min() > 0.4
    assert (mean[6:, 2] - mean[6:, 0]).min() > 0.4


def test_paper_preset_is_the_pixel_space_six_level_unet():
    cfg = FGMIAConfig.resolve("paper")
    assert (cfg.space, cfg.prediction, cfg.resolution, cfg.batch_size, cfg.lr) == (
        "pixel", "epsilon", 112, 16, 1e-4)
    with torch.device("meta"):
        denoiser = ConditionalDenoiser(
            sample_size=cfg.resolution, channels=3, condition_dim=512,
            block_channels=cfg.block_channels, attention=cfg.attention,
            layers_per_block=cfg.layers_per_block, token_dim=cfg.token_dim,
            head_dim=cfg.head_dim)
        out = denoiser(torch.zeros(2, 3, 112, 112), torch.tensor([5, 900]),
                       denoiser.context(torch.zeros(2, 512), 2))
    assert out.shape == (2, 3, 112, 112)
    assert 100e6 < sum(p.numel() for p in denoiser.parameters()) < 150e6


def test_a_cached_prior_that_no_longer_fits_is_a_clear_error(cache):
    ctx = context(ColourHead(), cache)
    cached_module(ctx, "prior-toy", {}, lambda: torch.nn.Linear(2, 2), lambda m: None)
    with pytest.raises(CacheError, match="delete that folder"):
        cached_module(ctx, "prior-toy", {}, lambda: torch.nn.Linear(3, 3), lambda m: None)
