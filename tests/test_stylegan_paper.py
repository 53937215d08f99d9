"""The StyleGAN prior at ``paper`` (issue 17): StyleGAN2's residual critic, the aux split read
batch by batch, outputs at the target's resolution, mixed precision without per-step syncs."""

from __future__ import annotations

import sys

import pytest
import torch

from mibench import precision
from mibench.attacks.ifgmi import IFGMI, IFGMIConfig
from mibench.attacks.ppa import PPA, PPAConfig
from mibench.attacks.priors import stylegan
from mibench.attacks.priors.dcgan import Critic
from mibench.attacks.priors.stylegan import StyleGAN, StyleGANPriorConfig, make_critic
from mibench.attacks.priors.stylegan_critic import (ResidualCritic, group_size,
                                                    minibatch_stddev)
from mibench.errors import ConfigError
from mibench.planning.gan_workloads import ifgmi, ppa
from mibench.planning.workloads import Setting
from mibench.testing import noise_aux, toy_context

CPU = torch.device("cpu")


def test_residual_critic_at_256_px_has_stylegan2s_size_and_shapes():
    with torch.device("meta"):
        critic = ResidualCritic(256)
        dcgan = Critic(256)
        scores = critic(torch.rand(8, 3, 256, 256))
    params = sum(p.numel() for p in critic.parameters())
    assert 25e6 < params < 32e6                          # StyleGAN2's D: ~29 M
    assert sum(p.numel() for p in dcgan.parameters()) > 2 * params
    assert scores.shape == (8,)
    assert critic.from_rgb.weight.shape == (128, 3, 1, 1)          # min(512, 32768 / 256)
    assert len(critic.blocks) == 6                                  # 256, 128, …, 8 px
    assert critic.blocks[0].conv1.weight.shape == (256, 128, 3, 3)  # ch(256) → ch(128)
    assert critic.blocks[0].skip.bias is None
    assert critic.conv.weight.shape == (512, 513, 3, 3)             # + the stddev map
    assert critic.fc.weight.shape == (512, 512 * 16)


def test_minibatch_stddev_appends_the_group_spread():
    x = torch.zeros(8, 4, 2, 2)
    x[1::2] = torch.tensor([0.0, 2.0, 0.0, 2.0])[:, None, None, None]   # group of odd samples
    out = minibatch_stddev(x, group=4)
    assert out.shape == (8, 5, 2, 2) and torch.equal(out[:, :4], x)
    assert torch.allclose(out[0::2, 4], torch.full((4, 2, 2), 1e-4))     # identical: √1e-8
    assert torch.allclose(out[1::2, 4], torch.ones(4, 2, 2))             # std of {0, 2} = 1
    assert group_size(6, 4) == 3 and group_size(7, 4) == 1 and group_size(2, 4) == 2


def test_residual_critic_scores_depend_on_the_rest_of_the_group():
    torch.manual_seed(0)
    critic = ResidualCritic(16, 128, 16)
    images = torch.rand(4, 3, 16, 16)
    changed = images.clone()
    changed[1:] = torch.rand(3, 3, 16, 16)
    assert not torch.allclose(critic(images)[0], critic(changed)[0])


def test_paper_trains_128_px_with_the_residual_critic_small_presets_keep_dcgan():
    paper = StyleGANPriorConfig()
    assert (paper.resolution, paper.critic) == (128, "resnet")
    assert isinstance(make_critic(paper), ResidualCritic)
    for preset in ("smoke", "mini"):
        cfg = PPAConfig.resolve(preset)
        assert cfg.critic == "dcgan" and isinstance(make_critic(cfg), Critic)
    with pytest.raises(ConfigError, match="critic"):
        StyleGANPriorConfig.resolve("smoke", {"critic": "stylegan3"})


def test_the_prior_key_names_critic_and_accumulation_only_off_their_old_values(ctx,
                                                                              monkeypatch):
    keys = []

    def record(ctx, component, config, make, train):
        keys.append(config)
        return torch.nn.ModuleDict({"generator": make()["generator"]})

    monkeypatch.setattr(stylegan, "cached_module", record)
    stylegan.load_stylegan(ctx, StyleGANPriorConfig.resolve("smoke"))
    stylegan.load_stylegan(ctx, StyleGANPriorConfig.resolve("smoke", {"critic": "resnet",
                                                                      "gan_accumulate": 2}))
    assert "critic" not in keys[0] and "gan_accumulate" not in keys[0]
    assert keys[1]["critic"] == "resnet" and keys[1]["gan_accumulate"] == 2


@pytest.mark.parametrize("side", [16, 24, 32])
def test_aux_batch_equals_the_whole_split_resized(ctx, side):
    whole = ctx.aux_images(side)
    index = torch.tensor([5, 0, 5, 47, 13])
    batch = ctx.aux_batch(index, side)
    assert batch.dtype == torch.uint8 and batch.shape == (5, 3, side, side)
    assert torch.equal(batch, whole[index])


def test_training_reads_batches_and_syncs_once(ctx, monkeypatch):
    """No whole-split resize and no ``.item()`` per step (issue 17), also under bf16."""
    precision.configure("bf16", CPU)
    cfg = StyleGANPriorConfig.resolve("smoke", {"gan_epochs": 2.0, "gan_batch_size": 16,
                                                "critic": "resnet"})
    g = StyleGAN(cfg.z_dim, cfg.w_dim, cfg.mapping_layers, cfg.resolution, cfg.channel_base,
                 cfg.channel_max)
    items, real_item = [], torch.Tensor.item

    def counted(self):
        if "priors" in sys._getframe(1).f_code.co_filename:      # not the optimiser's own
            items.append(1)
        return real_item(self)

    monkeypatch.setattr(torch.Tensor, "item", counted)
    monkeypatch.setattr(type(ctx), "aux_images", lambda *a: pytest.fail("whole split resized"))
    before = [p.clone() for p in g.parameters()]
    stylegan.train_stylegan(g, make_critic(cfg), ctx, epochs=cfg.gan_epochs,
                            batch_size=cfg.gan_batch_size, lr=cfg.gan_lr,
                            betas=tuple(cfg.gan_betas), critic_lr=cfg.critic_lr,
                            r1_gamma=cfg.r1_gamma)
    assert len(items) <= 2                                        # 6 steps, one final log
    assert all(p.dtype == torch.float32 for p in g.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, g.parameters()))


def test_ppa_and_ifgmi_return_images_at_the_targets_resolution(ctx):
    shape = {"resolution": 32, "crop": 0.78125, "search_space": 8, "gan_epochs": 0.5}
    labels = torch.tensor([0, 1, 2])
    for attack in (PPA(PPAConfig.resolve("smoke", {**shape, "iterations": 1})),
                   IFGMI(IFGMIConfig.resolve("smoke", {**shape, "stage_steps": (1, 1)}))):
        attack.prepare(ctx)
        with ctx.ledger.scope(labels):
            images = attack.invert(ctx.target, labels, ctx)
        assert images.shape == (3, 3, 16, 16)                     # ColourTarget: 16 px
        assert 0 <= images.min() and images.max() <= 1


def test_ppa_select_in_batches_matches_one_pass_for_the_first_batch(ctx, monkeypatch):
    attack = PPA(PPAConfig.resolve("smoke", {"final_draws": 2}))
    images = torch.rand(6, 3, 16, 16)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    whole = attack.select(ctx.target, images, labels, ctx)
    monkeypatch.setattr("mibench.attacks.ppa.FORWARD_BATCH", 2)
    assert attack.select(ctx.target, images, labels, ctx)[0] == whole[0]
    assert ctx.ledger.per_identity("forward") == {0: 8, 1: 8, 2: 8}


def test_paper_shaped_ppa_prepares_and_inverts_on_the_cpu(tmp_path):
    """The ``paper`` structure (128 px, residual critic, 100 px crop, 112 px aux faces) with
    small channels: one training step, one search batch, one optimisation step."""
    ctx = toy_context(cache=tmp_path, aux=noise_aux(8, resolution=112))
    cfg = PPAConfig.resolve(None, {"z_dim": 16, "w_dim": 16, "mapping_layers": 2,
                                   "channel_base": 256, "channel_max": 16, "gan_epochs": 0.5,
                                   "gan_batch_size": 4, "search_space": 4, "batch_size": 4,
                                   "iterations": 1, "final_draws": 1})
    attack = PPA(cfg)
    attack.prepare(ctx)
    assert attack.prior.resolution == 128 and cfg.critic == "resnet"
    labels = torch.tensor([0, 1])
    with ctx.ledger.scope(labels):
        images = attack.invert(ctx.target, labels, ctx)
    assert images.shape == (2, 3, 16, 16)
    assert attack.select(ctx.target, images, labels, ctx).tolist() == [0, 1]


def test_training_accumulates_micro_batches_to_the_whole_batchs_gradient(ctx, monkeypatch):
    """With a per-sample critic (DCGAN's, instance norm) two micro-batches give the gradient
    of the whole batch."""
    cfg = StyleGANPriorConfig.resolve("smoke", {"gan_epochs": 0.1})     # one step
    grads = []

    def capture(self, optimiser):
        grads.append([p.grad.clone() for group in optimiser.param_groups
                      for p in group["params"]])

    monkeypatch.setattr(precision.LossScaler, "apply", capture)
    for parts in (1, 2):
        torch.manual_seed(0)
        g = StyleGAN(cfg.z_dim, cfg.w_dim, cfg.mapping_layers, cfg.resolution,
                     cfg.channel_base, cfg.channel_max)
        stylegan.train_stylegan(g, make_critic(cfg), ctx, epochs=cfg.gan_epochs,
                                batch_size=8, lr=cfg.gan_lr, betas=tuple(cfg.gan_betas),
                                critic_lr=cfg.critic_lr, r1_gamma=cfg.r1_gamma, parts=parts)
    assert len(grads) == 4                              # (critic, generator) per run
    whole, split = grads[:2], grads[2:]
    for a, b in zip(whole, split):
        assert all(torch.allclose(x, y, rtol=1e-4, atol=1e-5) for x, y in zip(a, b))


def test_w_space_parts_optimise_the_batch_in_pieces(ctx):
    labels = torch.tensor([0, 1, 2, 0])
    runs = []
    for overrides in ({"batch_size": 4, "parts": 2}, {"batch_size": 2, "parts": 1}):
        attack = PPA(PPAConfig.resolve("smoke", {**overrides, "search_space": 8,
                                                 "iterations": 2}))
        attack.prepare(ctx)
        with ctx.ledger.scope(labels):
            runs.append(attack.invert(ctx.target, labels, ctx))
    # equal up to float rounding: a batch of 4 and one of 2 may sum convolutions in another
    # order (thread count follows the machine's load), ~1e-7 here
    torch.testing.assert_close(runs[0][:2], runs[1][:2], rtol=0, atol=1e-5)
    torch.testing.assert_close(runs[0][2:], runs[1][2:], rtol=0, atol=1e-5)


def test_paper_cells_of_the_stylegan_attacks_fit_24_gib():
    setting = Setting("paper", "ir152", 1000, 16, 30000, 1000, 112)
    for workload, cfg in ((ppa, PPAConfig()), (ifgmi, IFGMIConfig())):
        for phase in workload(cfg, setting):
            assert phase.cost().peak_bytes < 24 * 2 ** 30, phase.label
