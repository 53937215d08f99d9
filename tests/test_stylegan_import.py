"""Importing pretrained StyleGAN2 generators: NVLabs pickles read without running their code,
rosinality ``.pt`` state dicts, both mapped onto our faithful synthesis and compared with an
independent StyleGAN2 forward (``stylegan2_reference.py``); PPA and IF-GMI run on them."""

from __future__ import annotations

import os
import pickle
from argparse import Namespace
from pathlib import Path

import pytest
import torch
from stylegan2_reference import Generator, Persistent, install_fake_modules, setup_filter

from mibench.attacks.ifgmi import IFGMI, IFGMIConfig
from mibench.attacks.ppa import PPA, PPAConfig
from mibench.attacks.priors.stylegan_import import StyleGANCheckpointError, import_stylegan
from mibench.errors import ConfigError

ATOL = 1e-5


@pytest.fixture
def nvlabs(monkeypatch, tmp_path):
    """Write an NVLabs-layout snapshot pickle; returns a function (G_ema, extras) → path."""
    install_fake_modules(monkeypatch)
    marker = tmp_path / "module_src_ran"
    monkeypatch.setattr(Persistent, "module_src",
                        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n")

    def write(g_ema: Generator, protocol: int = pickle.DEFAULT_PROTOCOL, **extras) -> Path:
        path = tmp_path / "network-snapshot.pkl"
        data = {"G": g_ema, "D": None, "G_ema": g_ema, "augment_pipe": None,
                "training_set_kwargs": {"resolution": g_ema.img_resolution, "xflip": False},
                **extras}
        payload = pickle.dumps(data, protocol=protocol)
        if protocol <= 3:   # as written in 2020 with numpy 1 (text GLOBAL opcodes)
            payload = payload.replace(b"numpy._core.multiarray\nscalar",
                                      b"numpy.core.multiarray\nscalar")
        path.write_bytes(payload)
        return path

    write.marker = marker
    return write


def compare(ours, reference: Generator) -> None:
    """Mapping (with truncation) and synthesis with a distinct w per style input agree."""
    gen = torch.Generator().manual_seed(1)
    z = torch.randn(3, reference.z_dim, generator=gen)
    assert ours.num_ws == reference.num_ws
    assert torch.allclose(ours.map(z, 0.7, 3), reference.mapping(z, 0.7, 3), atol=ATOL)
    ws = torch.randn(3, reference.num_ws, reference.w_dim, generator=gen)
    rgb = reference.synthesis(ws)
    state = ours.synthesise(ws)
    assert torch.allclose(state[1], rgb, atol=ATOL)
    assert torch.allclose(ours.image(state), (rgb + 1).div(2).clamp(0, 1), atol=ATOL)
    resumed = ours.synthesise(ws, 2, ours.synthesise(ws, 0, None, 2))   # IF-GMI's path
    assert torch.allclose(resumed[1], rgb, atol=ATOL)


@pytest.mark.parametrize("protocol", [3, pickle.DEFAULT_PROTOCOL])
def test_nvlabs_pickle_maps_onto_the_faithful_synthesis_without_running_its_code(nvlabs,
                                                                                  protocol):
    torch.manual_seed(0)
    reference = Generator(conv_clamp=1.0).randomise(0)
    ours = import_stylegan(nvlabs(reference, protocol))
    assert not nvlabs.marker.exists()                 # the pickled module_src never ran
    assert (ours.resolution, ours.z_dim, len(ours.blocks)) == (16, 8, 3)
    assert ours.faithful and ours.blocks[0].conv0 is None
    assert not any(p.requires_grad for p in ours.parameters())
    compare(ours, reference)
    unclamped = Generator(conv_clamp=None)
    unclamped.load_state_dict(reference.state_dict())
    ws = torch.randn(2, reference.num_ws, reference.w_dim)
    assert not torch.allclose(unclamped.synthesis(ws), reference.synthesis(ws), atol=1e-3)


class Payload:
    """Runs a shell command when unpickled by an ordinary unpickler."""

    def __init__(self, marker: Path, via: str) -> None:
        self.marker, self.via = marker, via

    def __reduce__(self):
        if self.via == "system":
            return os.system, (f"touch {self.marker}",)
        return exec, (f"open({str(self.marker)!r}, 'w').close()",)


@pytest.mark.parametrize("via, refused", [("system", "posix.system"), ("exec", "builtins.exec")])
def test_a_code_payload_next_to_the_weights_is_refused_and_never_runs(nvlabs, tmp_path, via,
                                                                      refused):
    marker = tmp_path / "payload_ran"
    path = nvlabs(Generator(), payload=Payload(marker, via))
    with pytest.raises(StyleGANCheckpointError, match=f"refers to {refused}.*refused"):
        import_stylegan(path)
    assert not marker.exists()
    with pytest.raises(StyleGANCheckpointError, match="refused"):
        import_stylegan(nvlabs(Generator(), evil=Payload(marker, via)))
    assert not marker.exists()


def test_missing_unfitting_and_corrupt_files_are_one_line_errors(nvlabs, tmp_path):
    with pytest.raises(StyleGANCheckpointError, match=r"ffhq\.pkl does not exist.*download"):
        import_stylegan(tmp_path / "ffhq.pkl")
    broken = tmp_path / "broken.pkl"
    broken.write_bytes(pickle.dumps({"G_ema": Generator()})[:200])
    with pytest.raises(StyleGANCheckpointError, match="not a readable NVLabs pickle"):
        import_stylegan(broken)
    odd = Generator()
    odd.synthesis.b8.conv1.register_buffer("extra", torch.zeros(2))
    with pytest.raises(StyleGANCheckpointError,
                       match=r"does not fit .*unexpected \['blocks\.1\.conv1\.extra'\]"):
        import_stylegan(nvlabs(odd))
    with pytest.raises(StyleGANCheckpointError, match="holds no G_ema"):
        import_stylegan(nvlabs(Generator(), G_ema={"weights": torch.zeros(1)}))


def to_rosinality(reference: Generator) -> dict[str, torch.Tensor]:
    """The same weights in rosinality stylegan2-pytorch's names and shapes."""
    sd = reference.state_dict()
    out = {}
    for i in range(reference.mapping.num_layers):
        for kind in ("weight", "bias"):
            out[f"style.{i + 1}.{kind}"] = sd[f"mapping.fc{i}.{kind}"]
    out["input.input"] = sd["synthesis.b4.const"][None]
    blur = setup_filter() * 4

    def conv(ours: str, theirs: str) -> None:
        out[f"{theirs}.conv.weight"] = sd[f"{ours}.weight"][None]
        out[f"{theirs}.conv.modulation.weight"] = sd[f"{ours}.affine.weight"]
        out[f"{theirs}.conv.modulation.bias"] = sd[f"{ours}.affine.bias"]

    def styled(ours: str, theirs: str, noise: int) -> None:
        conv(ours, theirs)
        out[f"{theirs}.noise.weight"] = sd[f"{ours}.noise_strength"].reshape(1)
        out[f"{theirs}.activate.bias"] = sd[f"{ours}.bias"]
        out[f"noises.noise_{noise}"] = sd[f"{ours}.noise_const"][None, None]

    styled("synthesis.b4.conv1", "conv1", 0)
    conv("synthesis.b4.torgb", "to_rgb1")
    out["to_rgb1.bias"] = sd["synthesis.b4.torgb.bias"].reshape(1, 3, 1, 1)
    for j, r in enumerate(reference.synthesis.resolutions[1:]):
        styled(f"synthesis.b{r}.conv0", f"convs.{2 * j}", 2 * j + 1)
        out[f"convs.{2 * j}.conv.blur.kernel"] = blur
        styled(f"synthesis.b{r}.conv1", f"convs.{2 * j + 1}", 2 * j + 2)
        conv(f"synthesis.b{r}.torgb", f"to_rgbs.{j}")
        out[f"to_rgbs.{j}.bias"] = sd[f"synthesis.b{r}.torgb.bias"].reshape(1, 3, 1, 1)
        out[f"to_rgbs.{j}.upsample.kernel"] = blur
    return out


def test_rosinality_state_dict_maps_onto_the_same_synthesis(tmp_path):
    torch.manual_seed(0)
    reference = Generator(img_resolution=32, channel_base=256).randomise(2)
    path = tmp_path / "550000.pt"
    torch.save({"g_ema": to_rosinality(reference),
                "latent_avg": reference.mapping.w_avg.clone()}, path)
    ours = import_stylegan(path)
    assert ours.resolution == 32 and ours.num_ws == 8
    compare(ours, reference)
    # train.py's checkpoint: argparse args, no latent_avg (w_avg estimated as the mean w)
    torch.save({"g": {}, "g_ema": to_rosinality(reference), "args": Namespace(size=32)}, path)
    ours = import_stylegan(path)
    mean_w = reference.mapping(torch.randn(20_000, reference.z_dim))[:, 0].mean(0)
    assert torch.allclose(ours.w_avg, mean_w, atol=0.05)
    reference.mapping.w_avg.copy_(ours.w_avg)
    compare(ours, reference)


def test_rosinality_file_with_pickled_code_is_refused(tmp_path):
    marker = tmp_path / "payload_ran"
    path = tmp_path / "g.pt"
    torch.save({"g_ema": {}, "payload": Payload(marker, "system")}, path)
    with pytest.raises(StyleGANCheckpointError, match="pickled code or objects.*refused"):
        import_stylegan(path)
    assert not marker.exists()


def test_ppa_runs_on_an_imported_nvlabs_checkpoint(ctx, nvlabs):
    torch.manual_seed(0)
    path = nvlabs(Generator(img_resolution=32, channel_base=256, conv_clamp=256.0).randomise(3))
    attack = PPA(PPAConfig.resolve("smoke", {"stylegan_checkpoint": str(path)}))
    attack.prepare(ctx)
    assert attack.prior.faithful and not nvlabs.marker.exists()
    labels = torch.tensor([0, 1, 2, 2])
    with ctx.ledger.scope(labels):
        images = attack.invert(ctx.target, labels, ctx)
    # sizes come from the file (32 px, z 8), not from the smoke config (16 px, z 16); the
    # images come back at the target's 16 px
    assert images.shape == (4, 3, 16, 16) and 0 <= images.min() and images.max() <= 1
    assert attack.prior.resolution == 32
    assert attack.prior.z_dim == 8 and attack.prior.num_ws == 8
    assert not (ctx.cache.root / "prior-stylegan").exists()     # imported, not trained


def test_ifgmi_runs_on_an_imported_checkpoint_and_checks_its_stages(ctx, nvlabs):
    torch.manual_seed(0)
    path = nvlabs(Generator().randomise(4))
    attack = IFGMI(IFGMIConfig.resolve("smoke", {"stylegan_checkpoint": str(path)}))
    attack.prepare(ctx)
    labels = torch.tensor([0, 1])
    with ctx.ledger.scope(labels):
        images = attack.invert(ctx.target, labels, ctx)
    assert images.shape == (2, 3, 16, 16) and 0 <= images.min() and images.max() <= 1
    assert not (ctx.cache.root / "prior-stylegan").exists()     # imported, not trained
    too_many = IFGMI(IFGMIConfig.resolve("smoke", {"stylegan_checkpoint": str(path),
                                                   "resolution": 32,
                                                   "stage_steps": (1, 1, 1, 1)}))
    with pytest.raises(ConfigError, match="4 stages, but the prior has 3 synthesis blocks"):
        too_many.prepare(ctx)
