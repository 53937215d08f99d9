"""KEDMI: the semi-supervised GAN's losses, a target-dependent cached prior, and distributional
recovery whose Gaussians move toward the identity."""

from __future__ import annotations

import math

import torch
from torch import nn

from mibench.attacks.kedmi import KEDMI, KEDMIConfig
from mibench.attacks.latent import Chunk
from mibench.attacks.priors.kedmi_gan import (KEDMIDiscriminator, MinibatchDiscrimination,
                                              discriminator_loss, prior_loss)
from mibench.testing import PROTOTYPES, assert_loaded_from_cache, colour_aux


def smoke_config(**overrides) -> KEDMIConfig:
    return KEDMIConfig.resolve("smoke", overrides)


class ColourGenerator(nn.Module):
    """z ∈ R³ → a uniform 16 px image of colour sigmoid(z): the latent is the colour."""

    z_dim = 3

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(z)[:, :, None, None].expand(-1, 3, 16, 16)


class FlatDiscriminator(nn.Module):
    """Equal class logits everywhere: the prior term has no gradient."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x.flatten(1), torch.zeros(len(x), 3) + 0 * x.sum()


def test_prior_loss_is_minus_log_d_of_the_k_plus_1_gan():
    logits = torch.tensor([[0.0, 0.0, 0.0], [5.0, -1.0, 2.0]])
    z = logits.exp().sum(1)
    assert torch.allclose(prior_loss(logits), -torch.log(z / (z + 1)))
    # real images scored real and fake ones fake give a lower discriminator loss than the reverse
    soft = torch.full((2, 3), 1 / 3)
    confident, unsure = torch.full((2, 3), 4.0), torch.full((2, 3), -4.0)
    assert (discriminator_loss(confident, soft, confident, unsure)
            < discriminator_loss(unsure, soft, unsure, confident))


def test_minibatch_discrimination_sees_the_other_samples():
    layer = MinibatchDiscrimination(4, kernels=2, kernel_dim=3)
    same = layer(torch.ones(3, 4))[:, 4:]
    assert torch.allclose(same, torch.full((3, 2), 2.0))      # two identical other samples
    spread = layer(torch.randn(3, 4) * 10)[:, 4:]
    assert (spread < same).all()
    d = KEDMIDiscriminator(num_classes=5, resolution=32, width=0.125)
    features, logits = d(torch.rand(4, 3, 32, 32))
    assert logits.shape == (4, 5) and features.shape[0] == 4


def test_distribution_moves_toward_the_identity(ctx):
    """μ of each identity's Gaussian moves from grey toward the identity's colour."""
    attack = KEDMI(smoke_config(iterations=150, lr=0.05, z_dim=3, identity_weight=1.0))
    attack.generator, attack.discriminator = ColourGenerator(), FlatDiscriminator()
    labels = torch.tensor([0, 1, 2])
    chunk = Chunk(labels, slice(0, 3), torch.Generator().manual_seed(0))
    mu, log_var = attack._fit(ctx.target, chunk, ctx)
    prototypes = torch.tensor(PROTOTYPES)
    before = (torch.full((3, 3), 0.5) - prototypes).norm(dim=1)
    after = (torch.sigmoid(mu) - prototypes).norm(dim=1)
    assert (after < 0.5 * before).all(), (before, after)
    assert log_var.shape == (3, 3) and torch.isfinite(log_var).all()


def test_prior_is_target_dependent_cached_and_queries_are_counted(ctx):
    ctx.aux = colour_aux(24, resolution=32)
    KEDMI(smoke_config()).prepare(ctx)
    assert ctx.ledger.total("forward") == 24                 # soft labels: one query per image
    attack = KEDMI(smoke_config())
    with assert_loaded_from_cache(ctx.cache, "prior-kedmi"):
        attack.prepare(ctx)


def test_invert_draws_one_image_per_label_in_label_order(ctx):
    attack = KEDMI(smoke_config(iterations=40, lr=0.05, z_dim=3, identity_weight=1.0,
                                batch_size=2))
    attack.generator, attack.discriminator = ColourGenerator(), FlatDiscriminator()
    labels = torch.tensor([2, 0, 2, 1, 0, 1])
    images = attack.invert(ctx.target, labels, ctx)
    assert images.shape == (6, 3, 16, 16)
    colours = images.mean(dim=(2, 3))
    nearest = torch.cdist(colours, torch.tensor(PROTOTYPES)).argmin(1)
    assert nearest.tolist() == labels.tolist()
    assert set(ctx.ledger.counts["gradient"]) == {0, 1, 2}
    assert not math.isnan(float(images.sum()))
