"""Importing the official FGMIA prior: a diffusers ``UNet2DConditionModel`` saved the way
FGMIA_codes' pipeline saves it (``unet/config.json`` + safetensors) maps onto our denoiser and
computes what the official pipeline computes; strict, pickle-free, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from diffusers import DDIMScheduler, UNet2DConditionModel

from mibench.attacks.fgmia import FGMIA, FGMIAConfig
from mibench.attacks.priors.diffusion_import import DiffusionCheckpointError, import_fgmia_unet
from mibench.errors import ConfigError
from mibench.target import OpenSetTarget
from mibench.testing import colour_aux, toy_context

SIDE, TOKEN = 16, 3
SIZES = {"resolution": SIDE, "block_channels": (32, 64), "attention": (False, True),
         "layers_per_block": 1, "token_dim": TOKEN, "head_dim": 8}


def official_unet(seed: int = 0) -> UNet2DConditionModel:
    """FGMIA_codes' ``get_ldm_model`` at test size (its other settings are diffusers'
    defaults), with perturbed weights so that a zero-initialised layer cannot hide a swap."""
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=(SIDE, SIDE), in_channels=3, out_channels=3,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), block_out_channels=(32, 64),
        layers_per_block=1, cross_attention_dim=TOKEN)
    with torch.no_grad():
        for tensor in unet.parameters():
            tensor.add_(0.02 * torch.randn_like(tensor))
    return unet.eval()


@pytest.fixture(scope="module")
def pipeline_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pipeline folder as ``DiffusionPipeline.save_pretrained`` writes it (unet part)."""
    root = tmp_path_factory.mktemp("fgmia") / "Arcface18-FG"
    official_unet().save_pretrained(root / "unet")
    DDIMScheduler(num_train_timesteps=1000).save_pretrained(root / "scheduler")  # FGMIA_codes'
    (root / "model_index.json").write_text(json.dumps({"_class_name": "PDMTargetToImagePipeline"}))
    return root


def test_official_unet_maps_onto_our_denoiser_and_predicts_the_same_noise(
        pipeline_dir: Path) -> None:
    official = official_unet()
    ours = import_fgmia_unet(pipeline_dir, TOKEN, SIZES).eval()
    features = torch.nn.functional.normalize(torch.randn(2, TOKEN), dim=1)
    x, t = torch.randn(2, 3, SIDE, SIDE), torch.tensor([10, 700])
    with torch.no_grad():
        expected = official(x, t, encoder_hidden_states=features.reshape(2, -1, TOKEN)).sample
        got = ours(x, t, ours.context(features, 2))
    assert torch.allclose(got, expected, atol=1e-6)
    assert ours.sample_size == SIDE and ours.channels == 3


def test_unet_folder_and_a_bare_bin_state_dict_import_too(pipeline_dir: Path,
                                                          tmp_path: Path) -> None:
    expected = official_unet().state_dict()
    from_folder = import_fgmia_unet(pipeline_dir / "unet", TOKEN, SIZES).unet.state_dict()
    assert all(torch.equal(from_folder[k], v) for k, v in expected.items())
    bare = tmp_path / "unet_ema.bin"
    torch.save({f"module.{k}": v for k, v in expected.items()}, bare)
    from_bin = import_fgmia_unet(bare, TOKEN, SIZES).unet.state_dict()   # sizes from fallback
    assert all(torch.equal(from_bin[k], v) for k, v in expected.items())


def _saved(tmp_path: Path, state: dict[str, torch.Tensor]) -> Path:
    file = tmp_path / "weights.pt"
    torch.save(state, file)
    return file


@pytest.mark.parametrize(("edit", "message"), [
    (lambda s: s.pop("conv_in.weight"), r"missing keys 1 \(conv_in\.weight\)"),
    (lambda s: s.update(extra=torch.zeros(1)), r"unexpected keys 1 \(extra\)"),
    (lambda s: s.update({"conv_out.bias": torch.zeros(4)}),
     r"1 shape mismatches \(e\.g\. conv_out\.bias: checkpoint \(4,\) vs model \(3,\)\)"),
])
def test_loading_is_strict(tmp_path: Path, edit, message: str) -> None:
    state = official_unet().state_dict()
    edit(state)
    with pytest.raises(DiffusionCheckpointError, match=f"does not fit the FGMIA UNet: {message}"):
        import_fgmia_unet(_saved(tmp_path, state), TOKEN, SIZES)


def test_a_config_with_other_settings_is_refused(pipeline_dir: Path, tmp_path: Path) -> None:
    unet = tmp_path / "unet"
    unet.mkdir()
    config = json.loads((pipeline_dir / "unet" / "config.json").read_text())
    (unet / "diffusion_pytorch_model.safetensors").write_bytes(
        (pipeline_dir / "unet" / "diffusion_pytorch_model.safetensors").read_bytes())
    (unet / "config.json").write_text(json.dumps({**config, "act_fn": "mish"}))
    with pytest.raises(DiffusionCheckpointError, match=r"1 UNet settings differ .* act_fn 'mish'"):
        import_fgmia_unet(unet, TOKEN, SIZES)
    (unet / "config.json").write_text(json.dumps({**config, "_class_name": "UNet2DModel"}))
    with pytest.raises(DiffusionCheckpointError, match="describes a UNet2DModel"):
        import_fgmia_unet(unet, TOKEN, SIZES)
    (unet / "config.json").write_text(json.dumps({**config, "sample_size": [112, 96]}))
    with pytest.raises(DiffusionCheckpointError, match="not square"):
        import_fgmia_unet(unet, TOKEN, SIZES)


def test_a_pipeline_trained_with_another_noise_schedule_is_refused(pipeline_dir: Path,
                                                                  tmp_path: Path) -> None:
    other = tmp_path / "pipeline"
    (other / "unet").mkdir(parents=True)
    for name in ("config.json", "diffusion_pytorch_model.safetensors"):
        (other / "unet" / name).write_bytes((pipeline_dir / "unet" / name).read_bytes())
    DDIMScheduler(beta_schedule="scaled_linear").save_pretrained(other / "scheduler")
    with pytest.raises(DiffusionCheckpointError,
                       match="another noise schedule: beta_schedule 'scaled_linear'"):
        import_fgmia_unet(other, TOKEN, SIZES)


class Payload:
    def __reduce__(self):
        return (Path.touch, (Path("/nonexistent-dir-for-test/ran"),))


def test_unreadable_or_unsafe_files_give_one_line_errors(tmp_path: Path) -> None:
    text = tmp_path / "notes.bin"
    text.write_text("these are not weights\n")
    with pytest.raises(DiffusionCheckpointError) as err:
        import_fgmia_unet(text, TOKEN, SIZES)
    assert "notes.bin is not a PyTorch or safetensors checkpoint" in str(err.value)
    assert "\n" not in str(err.value)
    bad = tmp_path / "bad.safetensors"
    bad.write_text("not safetensors")
    with pytest.raises(DiffusionCheckpointError, match="bad.safetensors is not a readable"):
        import_fgmia_unet(bad, TOKEN, SIZES)
    unsafe = tmp_path / "unsafe.pt"
    torch.save({"conv_in.weight": Payload()}, unsafe)
    with pytest.raises(DiffusionCheckpointError, match="pickled code .* refused without running"):
        import_fgmia_unet(unsafe, TOKEN, SIZES)
    with pytest.raises(DiffusionCheckpointError, match="missing.pt does not exist"):
        import_fgmia_unet(tmp_path / "missing.pt", TOKEN, SIZES)
    with pytest.raises(DiffusionCheckpointError, match="holds none of diffusion_pytorch_model"):
        import_fgmia_unet(tmp_path, TOKEN, SIZES)


class ColourGallery(OpenSetTarget):
    """Open set: feature = centred mean colour (3-d); gallery = red, green, blue."""

    def __init__(self) -> None:
        super().__init__(num_classes=3, resolution=SIDE, feature_dim=TOKEN, mean=(0, 0, 0),
                         std=(1, 1, 1), scale=10.0)
        self.enrol(torch.eye(3) - 1 / 3)

    def embed(self, x):
        colour = x.mean(dim=(2, 3))
        return colour - colour.mean(dim=1, keepdim=True)


def fgmia(checkpoint: Path, **overrides) -> FGMIA:
    return FGMIA(FGMIAConfig.resolve("smoke", {
        "space": "pixel", "prediction": "epsilon", "prior_checkpoint": str(checkpoint),
        **{k: v for k, v in SIZES.items() if k != "head_dim"}, **overrides}))


def test_fgmia_samples_from_the_imported_prior_without_training(
        pipeline_dir: Path, cache, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(FGMIA, "_train", lambda *a: pytest.fail("trained a prior"))
    ctx = toy_context(cache=cache, target=ColourGallery(), aux=colour_aux(8, power=3),
                      fingerprint="colours:gallery", aux_fingerprint="colours")
    attack = fgmia(pipeline_dir)
    attack.prepare(ctx)
    official = official_unet().state_dict()
    assert all(torch.equal(attack.prior.denoiser.unet.state_dict()[k], v)
               for k, v in official.items())
    images = attack.invert(ctx.target, torch.tensor([0, 2]), ctx)
    assert images.shape == (2, 3, SIDE, SIDE) and 0 <= images.min() <= images.max() <= 1
    assert not (cache.root / "prior-fgmia").exists()


def test_the_official_prior_needs_its_own_setting(pipeline_dir: Path) -> None:
    with pytest.raises(ConfigError, match="prior_checkpoint: the official priors denoise pixels"):
        fgmia(pipeline_dir, space="latent")
    with pytest.raises(ConfigError, match="prior_checkpoint"):
        fgmia(pipeline_dir, condition="logits")
