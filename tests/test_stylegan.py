"""The StyleGAN prior and the shared augmentations: structure IF-GMI and PPA rely on."""

from __future__ import annotations

import torch

from mibench.attacks.augment import Augment, center_crop, random_flip, random_resized_crop
from mibench.attacks.ifgmi import IFGMI, IFGMIConfig
from mibench.attacks.ppa import PPA, PPAConfig
from mibench.attacks.priors.fir import fir_upsample, upsample_conv
from mibench.attacks.priors.stylegan import StyleGAN
from mibench.testing import assert_loaded_from_cache


def small() -> StyleGAN:
    torch.manual_seed(0)
    return StyleGAN(z_dim=8, w_dim=8, mapping_layers=2, resolution=32, channel_base=128,
                    channel_max=16).eval()


def test_style_inputs_truncation_and_running_mean():
    g = small()
    assert len(g.blocks) == 4 and g.num_ws == 8
    g.w_avg.fill_(0.5)
    z = torch.randn(3, 8)
    ws = g.map(z)
    assert ws.shape == (3, 8, 8) and torch.equal(ws[:, 0], ws[:, 7])
    cut = g.map(z, psi=0.0, cutoff=3)
    assert torch.equal(cut[:, :3], torch.full((3, 3, 8), 0.5)) and torch.equal(cut[:, 3:],
                                                                              ws[:, 3:])
    g.train()
    g.map(z)
    assert not torch.equal(g.w_avg, torch.full((8,), 0.5))   # tracked only while training


def test_synthesis_resumes_from_any_block():
    g = small()
    ws = g.map(torch.randn(2, 8))
    full = g.synthesise(ws)
    middle = g.synthesise(ws, 0, None, 2)
    assert middle[0].shape == (2, 16, 8, 8)
    resumed = g.synthesise(ws, 2, middle)
    assert torch.allclose(resumed[1], full[1], atol=1e-6)
    images = g.image(full)
    assert images.shape == (2, 3, 32, 32) and 0 <= images.min() and images.max() <= 1
    # changing the fed-in feature changes the image: features are a real input
    altered = g.synthesise(ws, 2, (middle[0] + 1, middle[1]))
    assert not torch.allclose(altered[1], full[1])


def test_default_layout_and_numbers_are_unchanged_by_the_faithful_options():
    g = small()
    assert len(g.state_dict()) == 54 and not any("noise" in k for k in g.state_dict())
    assert g.blocks[0].conv0 is not None and not g.faithful
    images = g(torch.randn(2, 8, generator=torch.Generator().manual_seed(5)))
    # recorded with the generator before the faithful options existed (same seed and sizes)
    assert abs(images.mean().item() - 0.48800480365753174) < 1e-6
    assert torch.allclose(images[0, :, 0, 0],
                          torch.tensor([0.5428296327590942, 0.40187951922416687,
                                        0.5877809524536133]), atol=1e-6)


def test_faithful_layout_has_stylegan2s_first_block_noise_and_output_range():
    torch.manual_seed(0)
    g = StyleGAN(z_dim=8, w_dim=8, mapping_layers=2, resolution=16, channel_base=128,
                 channel_max=16, faithful=True, conv_clamp=0.5).eval()
    assert g.blocks[0].conv0 is None and g.blocks[1].conv0.noise_const.shape == (8, 8)
    state = g.synthesise(g.map(torch.randn(2, 8)))
    assert state[0].abs().max() <= 0.5                     # conv_clamp bounds activations
    assert torch.equal(g.image((torch.tensor([-3.0, -1.0, 0.0, 1.0, 3.0]), ) * 2),
                       torch.tensor([0.0, 0.0, 0.5, 1.0, 1.0]))


def test_fir_upsampling_keeps_the_mean_and_is_the_filtered_zero_insertion():
    ones = torch.ones(1, 2, 4, 4)
    assert torch.allclose(fir_upsample(ones)[..., 2:-2, 2:-2], torch.ones(1, 2, 4, 4))
    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, 1, 1] = 1.0                                    # an impulse at (1, 1) → (2, 2)
    taps = torch.tensor([1.0, 3.0, 3.0, 1.0]) / 8 * 2      # 1-D filter, gain 2 per axis
    expected = torch.zeros(8, 8)
    expected[1:5, 1:5] = taps[:, None] * taps[None, :]
    assert torch.allclose(fir_upsample(x)[0, 0], expected)
    weight = torch.zeros(1, 1, 3, 3)
    weight[0, 0, 1, 1] = 1.0                               # identity 3×3 kernel
    assert torch.allclose(upsample_conv(x, weight), fir_upsample(x))


def test_ppa_and_ifgmi_share_one_cached_prior(ctx):
    PPA(PPAConfig.resolve("smoke")).prepare(ctx)
    attack = IFGMI(IFGMIConfig.resolve("smoke"))
    with assert_loaded_from_cache(ctx.cache, "prior-stylegan"):   # IF-GMI loads PPA's prior
        attack.prepare(ctx)
    entries = [p for p in (ctx.cache.root / "prior-stylegan").iterdir()
               if not p.name.startswith(".")]
    assert len(entries) == 1


def test_augmentations_are_seeded_differentiable_and_keep_the_size():
    x = torch.rand(4, 3, 16, 16, requires_grad=True)
    same = random_resized_crop(x, (1.0, 1.0), (1.0, 1.0), torch.Generator().manual_seed(0))
    assert torch.allclose(same, x, atol=1e-5)
    a = random_resized_crop(x, (0.5, 0.9), (0.8, 1.2), torch.Generator().manual_seed(3))
    b = random_resized_crop(x, (0.5, 0.9), (0.8, 1.2), torch.Generator().manual_seed(3))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.allclose(a, x)
    a.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert torch.equal(random_flip(x, 1.0, torch.Generator()), x.flip(-1))
    assert torch.equal(random_flip(x, 0.0, torch.Generator()), x)
    assert center_crop(x, 0.5).shape == (4, 3, 8, 8)
    assert torch.equal(center_crop(x, 0.5), x[..., 4:12, 4:12])
    assert Augment(crop=0.5)(x, torch.Generator()).shape == (4, 3, 8, 8)
