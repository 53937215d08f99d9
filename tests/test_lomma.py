"""LOMMA: the logit loss with its feature regulariser on a toy linear head, surrogates that agree
with the target, and the plug-in on GMI and KEDMI."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mibench.attack import AttackContext
from mibench.attacks.lomma import GMILOMMA, GMILOMMAConfig, KEDMILOMMA, KEDMILOMMAConfig
from mibench.attacks.priors.surrogates import SmallCNN, agreement, distil, make_surrogate
from mibench.errors import ConfigError
from mibench.target import Target
from mibench.testing import ColourTarget, assert_loaded_from_cache, colour_aux, colour_images, \
    toy_context

W = torch.tensor([[2.0, -1.0, 0.0], [0.0, 1.0, 3.0]])
B = torch.tensor([0.5, -0.5])


class LinearTarget(Target):
    """Feature = mean colour; logits = W f + b (a toy linear head)."""

    def __init__(self) -> None:
        super().__init__(num_classes=2, resolution=16, feature_dim=3, mean=(0, 0, 0),
                         std=(1, 1, 1))
        self.head = nn.Linear(3, 2)
        self.head.weight.data, self.head.bias.data = W.clone(), B.clone()

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)


class MeanColourHead(nn.Module):
    """A surrogate on the mean colour with its own linear head."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.weight = weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3)) @ self.weight.T


def test_logit_loss_with_regulariser_on_a_linear_head():
    ctx = toy_context(target=LinearTarget())
    attack = GMILOMMA(GMILOMMAConfig.resolve("smoke", {"reg_weight": 0.5}))
    attack.anchor = torch.tensor([0.2, 0.2, 0.2])
    attack.surrogates = nn.ModuleList()
    colours = torch.tensor([[0.1, 0.6, 0.3], [0.9, 0.2, 0.4]])
    images = colours[:, :, None, None].expand(-1, 3, 16, 16)
    labels = torch.tensor([1, 0])
    logits = colours @ W.T + B
    expected = (-logits[[0, 1], labels]
                + 0.5 * (colours - attack.anchor).pow(2).mean(1))
    assert torch.allclose(attack.identity_loss(ctx.target, images, labels), expected)
    # with a surrogate the logit term is averaged over target and surrogate; the regulariser
    # stays the target's
    other = torch.tensor([[1.0, 1.0, 1.0], [-1.0, 0.0, 2.0]])
    attack.surrogates = nn.ModuleList([MeanColourHead(other)])
    surrogate_logits = colours @ other.T
    expected = (-(logits[[0, 1], labels] + surrogate_logits[[0, 1], labels]) / 2
                + 0.5 * (colours - attack.anchor).pow(2).mean(1))
    assert torch.allclose(attack.identity_loss(ctx.target, images, labels), expected)


def test_distilled_surrogate_agrees_with_the_target_on_held_out_images():
    """A small CNN distilled from the colour target on 96 aux colours agrees with it on 200
    held-out colours at ≥ 85 % (chance: about a third)."""
    ctx = toy_context()
    target = ColourTarget()
    train, held_out = colour_images(96, seed=1), colour_images(200, seed=2)
    with torch.no_grad():
        teacher = target(train.float() / 255)[0]
        truth = target(held_out.float() / 255)[0].argmax(1)
    student = SmallCNN(3, stages=2, width=0.5)
    distil(student, train, teacher, ctx, epochs=40, batch_size=32, lr=0.05, momentum=0.9,
           weight_decay=1e-4, temperature=1.0)
    assert agreement(student, held_out, truth) >= 0.85


def test_surrogate_names_are_checked():
    assert isinstance(make_surrogate("cnn-3", 5), SmallCNN)
    assert make_surrogate("efficientnet_b0", 5)(torch.rand(2, 3, 64, 64)).shape == (2, 5)
    with pytest.raises(ConfigError, match="unknown LOMMA surrogate 'vgg'"):
        make_surrogate("vgg", 5)


@pytest.mark.parametrize("attack_class,config_class,prior",
                         [(GMILOMMA, GMILOMMAConfig, "prior-gmi"),
                          (KEDMILOMMA, KEDMILOMMAConfig, "prior-kedmi")])
def test_plug_in_keeps_the_base_prior_and_caches_its_surrogates(ctx: AttackContext,
                                                                attack_class, config_class,
                                                                prior):
    ctx.aux = colour_aux(24, resolution=32)
    config = config_class.resolve("smoke")
    assert config.iterations == attack_class.__mro__[2].Config.resolve("smoke").iterations
    attack_class(config).prepare(ctx)
    assert (ctx.cache.root / prior).is_dir()
    queries = ctx.ledger.total("forward")
    attack = attack_class(config_class.resolve("smoke"))
    with assert_loaded_from_cache(ctx.cache, "prior-lomma-surrogates"):
        attack.prepare(ctx)
    assert ctx.ledger.total("forward") - queries == 24      # the anchor's aux features
    labels = torch.tensor([0, 0, 1])
    images = attack.invert(ctx.target, labels, ctx)
    assert images.shape == (3, 3, 32, 32)


def test_gmi_lomma_reuses_gmis_prior_although_its_surrogates_name_the_target(ctx):
    """GMI's prior is keyed by the aux split alone: the target-dependent fingerprint of
    ``gmi+lomma`` (its surrogates) must not make it train GMI's GAN once per target."""
    from mibench.attacks.gmi import GMI, GMIConfig

    ctx.aux = colour_aux(24, resolution=32)
    GMI(GMIConfig.resolve("smoke")).prepare(ctx)
    ctx.data_fingerprint = f"{ctx.aux_fingerprint}:colour-target"
    with assert_loaded_from_cache(ctx.cache, "prior-gmi"):
        GMILOMMA(GMILOMMAConfig.resolve("smoke")).prepare(ctx)
