"""Importing an official ADM (guided-diffusion / Diff-MI) state dict: the imported UNet computes
what the reference ADM computes, loading is strict with one-line errors, and Diff-MI fine-tunes
from the imported weights."""

from __future__ import annotations

import pytest
import torch
from adm_reference import UNetModel

from mibench.attacks.diffmi import DiffMI, DiffMIConfig
from mibench.attacks.priors.adm_import import ADMCheckpointError, load_adm, module_map
from mibench.attacks.priors.class_diffusion import FINETUNED, ClassDenoiser
from mibench.errors import ConfigError
from mibench.testing import colour_aux, toy_context


def _reference(seed: int = 0, **sizes) -> UNetModel:
    """A reference ADM with random (non-zero) weights, as after training."""
    torch.manual_seed(seed)
    options = dict(in_channels=3, model_channels=32, channel_mult=(1, 2), num_res_blocks=1,
                   attention_levels=(1,), num_classes=6, num_heads=2)
    model = UNetModel(**{**options, **sizes})
    for p in model.parameters():
        p.data.normal_(0, 0.1)
    return model.eval()


def _denoiser(**sizes) -> ClassDenoiser:
    options = dict(sample_size=8, channels=3, num_classes=5, block_channels=(32, 64),
                   attention=(False, True), layers_per_block=1, num_heads=2)
    return ClassDenoiser(**{**options, **sizes})


def _saved(tmp_path, state, name: str = "adm.pt"):
    path = tmp_path / name
    torch.save(state, path)
    return path


@pytest.mark.parametrize("blocks", [1, 2])
def test_imported_unet_computes_the_reference_adm(tmp_path, blocks):
    """Same ε for the same (x, t, y), the null class included: time embedding, label_emb,
    ResBlocks with scale-shift, legacy-order attention heads, resampling, skips, out."""
    reference = _reference(num_res_blocks=blocks)
    denoiser = load_adm(_saved(tmp_path, reference.state_dict()),
                        _denoiser(layers_per_block=blocks)).eval()
    x = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    t, y = torch.tensor([1, 250, 600, 999]), torch.tensor([0, 2, 4, 5])
    with torch.no_grad():
        expected, got = reference(x, t, y), denoiser(x, t, y)
    assert expected.abs().max() > 0.1
    assert torch.allclose(got, expected, atol=1e-5, rtol=0)


def test_every_adm_module_has_a_target():
    keys = {k.rpartition(".")[0] for k in _reference(num_res_blocks=2).state_dict()}
    mapped = module_map(_denoiser(layers_per_block=2))
    assert "output_blocks.2.2.conv" in mapped and "input_blocks.3.0.op" in mapped
    assert all(any(k == m or k.startswith(m + ".") for m in mapped) for k in keys)


def test_learn_sigma_keeps_the_epsilon_half(tmp_path):
    reference = _reference(out_channels=6)
    denoiser = load_adm(_saved(tmp_path, reference.state_dict()), _denoiser())
    x, t, y = torch.randn(2, 3, 8, 8), torch.tensor([10, 900]), torch.tensor([1, 5])
    with torch.no_grad():
        assert torch.allclose(denoiser(x, t, y), reference(x, t, y)[:, :3], atol=1e-5)


def test_import_errors_are_one_line(tmp_path):
    state = _reference().state_dict()
    cases = {
        "missing": ({k: v for k, v in state.items() if k != "out.0.bias"}, "lacks 1 tensors"),
        "extra": ({**state, "input_blocks.9.0.in_layers.0.weight": torch.ones(3)},
                  "unexpected tensor input_blocks.9"),
        "shape": ({**state, "out.2.bias": torch.ones(4)}, "conv_out.bias has shape"),
        "labels": ({**state, "label_emb.weight": torch.ones(9, 128)}, "9 label rows"),
        "not-a-dict": ([torch.ones(1)], "not a state dict"),
    }
    for name, (bad, message) in cases.items():
        with pytest.raises(ADMCheckpointError, match=message) as error:
            load_adm(_saved(tmp_path, bad, f"{name}.pt"), _denoiser())
        assert "\n" not in str(error.value)
    with pytest.raises(ADMCheckpointError, match="not a readable"):
        load_adm(tmp_path / "absent.pt", _denoiser())


def test_import_never_unpickles_code(tmp_path):
    """weights_only: a pickle that would call a function is refused, not run."""
    called = tmp_path / "called"
    with pytest.raises(ADMCheckpointError, match="not a readable"):
        load_adm(_saved(tmp_path, {"x": Touch(str(called))}, "evil.pt"), _denoiser())
    assert not called.exists()


class Touch:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_diffmi_finetunes_from_the_imported_checkpoint(tmp_path, cache):
    """``prior_checkpoint``: no pre-training; the fine-tuned prior equals the checkpoint
    outside the official fine-tuned set (smoke sizes in pixel space, 3 classes + null)."""
    reference = _reference(model_channels=16, attention_levels=(0, 1), num_classes=4,
                           num_heads=4, groups=16)
    path = _saved(tmp_path, reference.state_dict())
    ctx = toy_context(cache=cache, aux=colour_aux(48), fingerprint="colours",
                      aux_fingerprint="colours")
    attack = DiffMI(DiffMIConfig.resolve("smoke", {"space": "pixel", "prediction": "epsilon",
                                                   "prior_checkpoint": str(path)}))
    attack.prepare(ctx)
    assert not (cache.root / "prior-diffmi-pretrain").exists()
    start = load_adm(path, _denoiser(sample_size=16, num_classes=3, block_channels=(16, 32),
                                     attention=(True, True), num_heads=4)).unet.state_dict()
    tuned = attack.prior.denoiser.unet.state_dict()
    moved = {k for k in start if not torch.equal(start[k], tuned[k].cpu())}
    assert moved and all(k.startswith(FINETUNED) for k in moved)
    with pytest.raises(ConfigError, match="space = pixel"):
        DiffMI(DiffMIConfig.resolve("smoke", {"prior_checkpoint": str(path)})).prepare(ctx)
