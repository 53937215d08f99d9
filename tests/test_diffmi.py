"""Diff-MI at smoke size: p-reg, fine-tuning that touches only the official parameter set of the
first classes, the official augmentations, exact attack queries, and the final L2 PGD."""

from __future__ import annotations

import pytest
import torch

from mibench.attack import AttackContext
from mibench.attacks.augment import DiffMIAugment, PLGAugment
from mibench.attacks.diffmi import DiffMI, DiffMIConfig
from mibench.attacks.priors.pseudo_labels import top_n_pseudo_labels
from mibench.testing import ColourTarget, colour_aux, toy_context


@pytest.fixture
def ctx(cache) -> AttackContext:
    return toy_context(cache=cache, aux=colour_aux(48), fingerprint="colours",
                       aux_fingerprint="colours")


def config(**overrides) -> DiffMIConfig:
    return DiffMIConfig.resolve("smoke", overrides)


def cached_weights(cache, component: str) -> dict[str, torch.Tensor]:
    (path,) = [p for p in (cache.root / component).iterdir() if not p.name.startswith(".")]
    return torch.load(path / "weights.pt", weights_only=True)


def test_p_reg_and_finetuning_touch_only_the_class_pathway_and_middle_block(ctx):
    attack = DiffMI(config())
    attack.prepare(ctx)
    index, labels = top_n_pseudo_labels(ctx.target, ctx.aux.images, 4)
    features = ctx.aux.images[index].float().div(255).mean(dim=(2, 3))
    expected = torch.stack([features[labels == c].mean(0) for c in range(3)])
    assert torch.allclose(attack.p_reg, expected, atol=1e-5)

    before = cached_weights(ctx.cache, "prior-diffmi-pretrain")
    after = cached_weights(ctx.cache, "prior-diffmi")
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    official = {f"unet.{name}.{leaf}" for leaf in ("weight", "bias") for name in (
        "mid_block.resnets.0.conv1", "mid_block.resnets.0.conv2", "mid_block.resnets.1.conv1",
        "mid_block.resnets.1.conv2", "mid_block.attentions.0.to_out.0")}
    assert "unet.class_embedding.weight" in changed
    assert changed - {"unet.class_embedding.weight"} <= official
    assert ctx.ledger.total("gradient") > 0 and set(ctx.ledger.counts["gradient"]) == {"prepare"}


def test_finetuning_trains_the_official_set_for_the_first_classes(ctx, monkeypatch):
    """ft_class_fraction 0.3 of 3 classes fine-tunes class 0 only (the official 0–299 of
    1,000): the label rows of classes 1 and 2 keep their pre-trained values; the null row (3)
    moves with the guided sampler. Only label_emb + the middle block require grad."""
    seen: list[set[str]] = []
    backward = DiffMI._finetune_backward

    def recording(self, prior, *args):
        seen.append({n for n, p in prior.denoiser.named_parameters() if p.requires_grad})
        assert set(args[2].tolist()) == {0}            # the sampled labels
        return backward(self, prior, *args)

    monkeypatch.setattr(DiffMI, "_finetune_backward", recording)
    DiffMI(config()).prepare(ctx)
    assert seen and all(names == seen[0] for names in seen)
    assert seen[0] == {"unet.class_embedding.weight"} | {
        f"unet.mid_block.{m}.{leaf}" for leaf in ("weight", "bias") for m in (
            "resnets.0.conv1", "resnets.0.conv2", "resnets.1.conv1", "resnets.1.conv2",
            "attentions.0.to_out.0")}
    before = cached_weights(ctx.cache, "prior-diffmi-pretrain")["unet.class_embedding.weight"]
    after = cached_weights(ctx.cache, "prior-diffmi")["unet.class_embedding.weight"]
    assert len(after) == 4 and torch.equal(before[1:3], after[1:3])
    assert not torch.equal(before[0], after[0]) and not torch.equal(before[3], after[3])


def test_augmentations_are_the_official_ones():
    """Attack: flip, brightness jitter (p 0.5), 7×7 σ 3 blur (p 0.5), no crop, clamp
    (3_attack/attack.py); fine-tuning: aug64 with p 0.5 jitter (2_finetune train_util.py)."""
    attack = DiffMI(config())
    assert attack._augment(False) == DiffMIAugment(flip=0.5, brightness=0.2, jitter_p=0.5,
                                                   blur_kernel=7, blur_sigma=3.0, blur_p=0.5)
    assert attack._augment(True) == PLGAugment(scale=(0.8, 1.0), brightness=0.2, contrast=0.2,
                                               jitter_p=0.5, flip=0.5, degrees=5.0,
                                               rotation_p=0.5)
    assert DiffMI(config(ft_augment=False))._augment(True) is None


def test_diffmi_augment_flips_brightens_blurs_and_never_crops():
    gen = torch.Generator().manual_seed(0)
    ramp = torch.linspace(0, 1, 16).expand(3, 16, 16).repeat(256, 1, 1, 1)
    out = DiffMIAugment(jitter_p=0.0, blur_p=0.0)(ramp, gen)
    flipped = (out == ramp.flip(-1)).flatten(1).all(1)
    assert ((out == ramp).flatten(1).all(1) | flipped).all()      # flipped or kept: no crop
    assert 0.35 < flipped.float().mean() < 0.65
    grey = torch.full((512, 3, 8, 8), 0.5)
    shift = DiffMIAugment(flip=0.0, blur_p=0.0)(grey, gen) - 0.5
    per_image = shift[:, 0, 0, 0]
    assert torch.allclose(shift, per_image.view(-1, 1, 1, 1).expand_as(shift))   # brightness only
    assert per_image.abs().max() <= 0.2 + 1e-6 and 0.35 < (per_image != 0).float().mean() < 0.65
    dot = torch.zeros(1, 1, 15, 15)
    dot[..., 7, 7] = 1
    blurred = DiffMIAugment(flip=0.0, jitter_p=0.0, blur_p=1.0)(dot, gen)[0, 0]
    g = torch.exp(-torch.arange(-3, 4.0) ** 2 / 18)
    kernel = torch.outer(g, g) / torch.outer(g, g).sum()
    assert torch.allclose(blurred[4:11, 4:11], kernel, atol=1e-6) and blurred.sum() <= 1 + 1e-6
    assert DiffMIAugment()(torch.full((4, 3, 8, 8), 1.5), gen).max() <= 1


def test_attack_queries_are_exact_and_seeded(ctx):
    cfg = config(steps=3, augmentations=2, pgd_steps=2, attack_batch=4)
    attack = DiffMI(cfg)
    attack.prepare(ctx)
    before = {kind: ctx.ledger.total(kind) for kind in ("forward", "gradient")}
    labels = torch.tensor([0, 0, 1, 2, 2])
    images = attack.invert(ctx.target, labels, ctx)
    assert images.shape == (5, 3, 16, 16) and 0 <= images.min() and images.max() <= 1
    per_sample_gradient = 3 * 2 + 2
    per_sample_forward = 3 * 2 + 2 + 1
    assert ctx.ledger.per_identity("gradient") == {0: 2 * per_sample_gradient,
                                                   1: per_sample_gradient,
                                                   2: 2 * per_sample_gradient}
    assert ctx.ledger.total("forward") - before["forward"] == 5 * per_sample_forward
    assert torch.equal(images, attack.invert(ctx.target, labels, ctx))


def test_pgd_raises_the_target_score_within_the_l2_ball(ctx):
    attack = DiffMI(config(pgd_eps=0.5, pgd_step=0.2, pgd_steps=5))
    images = torch.full((3, 3, 16, 16), 0.5)
    labels = torch.tensor([0, 1, 2])
    out = attack._pgd(ctx.target, images, labels, ctx.generator(0))
    assert (out - images).flatten(1).norm(dim=1).max() <= 0.5 + 1e-5
    target = ColourTarget()
    with torch.no_grad():
        gain = (target(out)[0].softmax(1) - target(images)[0].softmax(1)).gather(
            1, labels[:, None])
    assert (gain > 0).all()
