"""The class-conditional ADM UNet of ``priors/class_diffusion.py``: a label embedding added to the
time embedding (null class C), ADM's head count and zero-initialised residual branches, null
labels drawn per batch, and Diff-MI's 10-step refinement grid."""

from __future__ import annotations

import pytest
import torch
from diffusers.models.attention_processor import Attention

from mibench.attack import AttackContext
from mibench.attacks.priors.class_diffusion import (ClassDenoiser, ClassDiffusionConfig,
                                                    class_denoiser)
from mibench.attacks.priors.diffusion import ddim_denoise, noise_scheduler, train_denoiser
from mibench.errors import ConfigError
from mibench.testing import colour_aux, toy_context


def _denoiser(seed: int = 0) -> ClassDenoiser:
    torch.manual_seed(seed)
    model = ClassDenoiser(sample_size=8, channels=3, num_classes=5, block_channels=(32, 64),
                          attention=(False, True), layers_per_block=1, num_heads=4)
    for p in model.parameters():          # over ADM's zero init: every branch must matter
        p.data.normal_(0, 0.05)
    return model.eval()


def test_the_label_embedding_is_added_to_the_time_embedding():
    model = _denoiser()
    embedding = model.unet.class_embedding
    assert isinstance(embedding, torch.nn.Embedding) and embedding.num_embeddings == 6
    assert embedding.embedding_dim == model.unet.time_embedding.linear_2.out_features
    x, t = torch.randn(2, 3, 8, 8), torch.tensor(300)
    with torch.no_grad():
        outputs = {y: model(x, t, torch.tensor([y, y])) for y in (0, 1, 5)}
        assert not torch.allclose(outputs[0], outputs[1]) and not torch.allclose(
            outputs[0], outputs[5])
        # the label acts only through emb = time_embedding(t) + class_embedding(y): moving the
        # embedding row of class 1 onto class 0's makes their outputs equal
        embedding.weight[1] = embedding.weight[0]
        assert torch.equal(model(x, t, torch.tensor([1, 1])), outputs[0])
    assert torch.equal(model.context(None, 3), torch.tensor([5, 5, 5]))


def test_adm_heads_and_zero_initialised_residual_branches():
    torch.manual_seed(0)
    model = ClassDenoiser(sample_size=8, channels=3, num_classes=2, block_channels=(32, 64),
                          attention=(True, True), layers_per_block=1, num_heads=4)
    attentions = [m for m in model.unet.modules() if isinstance(m, Attention)]
    assert attentions and all(m.heads == 4 and m.group_norm is not None for m in attentions)
    assert {m.inner_dim // m.heads for m in attentions} == {8, 16}   # fixed heads, not width
    assert all(m.to_out[0].weight.abs().sum() == 0 for m in attentions)
    assert model.unet.conv_out.weight.abs().sum() == 0
    with pytest.raises(ConfigError, match="num_heads"):
        ClassDiffusionConfig.resolve("smoke", {"num_heads": 3})


def test_null_labels_replace_the_whole_batch(cache):
    """ADM's p_uncond: a training batch is all null or all labelled."""
    ctx: AttackContext = toy_context(cache=cache, aux=colour_aux(12), fingerprint="c",
                                     aux_fingerprint="c")
    model = _denoiser()
    keeps = []
    dropped = model.dropped

    def recording(labels: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        keeps.append(keep.clone())
        return dropped(labels, keep)

    model.dropped = recording
    data = torch.randn(12, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    train_denoiser(model, ctx, samples=lambda index, gen: data[index],
                   conditions=torch.arange(12) % 5, steps=24, batch_size=6, lr=1e-4, warmup=1,
                   weight_decay=0.0, betas=(0.9, 0.999), max_ema_decay=0.9,
                   condition_dropout=0.5, drop_batch=True)
    assert len(keeps) == 24 and all(k.shape == (6,) and (k == k[0]).all() for k in keeps)
    assert 0 < sum(bool(k[0]) for k in keeps) < 24
    labels = torch.tensor([0, 1, 2, 3, 4, 0])
    assert torch.equal(dropped(labels, torch.zeros(6, dtype=torch.bool)), torch.full((6,), 5))


def test_refinement_runs_ten_unclipped_steps_from_t_100():
    """Diff-MI's inverse_ddim from t = 100 on the 100-step grid: the UNet sees t = 100, 90, …,
    10 (the grid's t = 0 step is not taken), and x₀ is never clipped."""
    seen = []

    class Recorder(torch.nn.Module):
        def forward(self, x, t, labels):
            seen.append(int(t))
            return torch.zeros_like(x)

    recorder = Recorder()
    recorder.context = lambda labels, n: torch.zeros(n, dtype=torch.long)
    scheduler = noise_scheduler(False)
    scheduler.set_timesteps(100)
    x = torch.full((1, 3, 4, 4), 5.0)
    out, predictions = ddim_denoise(recorder, x, torch.tensor([0]), scheduler,
                                    generator=torch.Generator().manual_seed(0), start=100)
    assert seen == list(range(100, 0, -10)) and len(predictions) == 10
    assert predictions[-1].max() > 1            # ε̂ = 0 ⇒ x̂₀ = x_t/√ᾱ: no clip to [−1, 1]
    alphas = scheduler.alphas_cumprod
    assert torch.allclose(out, x * (alphas[0] / alphas[100]).sqrt(), rtol=1e-5)


def test_class_denoiser_follows_the_config():
    cfg = ClassDiffusionConfig.resolve("paper")
    with torch.device("meta"):
        denoiser = class_denoiser(cfg, 1000, None)
    unet = denoiser.unet
    assert unet.class_embedding.num_embeddings == 1001 and unet.config.sample_size == 64
    assert [type(b).__name__ for b in unet.down_blocks] == [
        "DownBlock2D", "DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"]
    assert [len(b.resnets) for b in unet.down_blocks] == [3, 3, 3, 3]
    assert unet.config.block_out_channels == (128, 256, 384, 512)
    assert unet.config.resnet_time_scale_shift == "scale_shift"
