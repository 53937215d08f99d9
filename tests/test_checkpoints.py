"""Checkpoints: our format round-trips; released formats import strictly; bad files fail clearly."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import pytest
import torch

from mibench.targets import (CheckpointError, ClosedSetModel, OpenSetModel, TargetConfig,
                             build_backbone, build_target, import_checkpoint, load_checkpoint,
                             save_checkpoint)
from mibench.targets.checkpoints import tensors_sha256

SMOKE = {"width": 0.0625, "resolution": 32, "feature_dim": 16}
KEDMI_IR = TargetConfig(arch="irse", depth=50, kind="closed", loss="softmax", **SMOKE)
ARCFACE_18 = TargetConfig(arch="iresnet", depth=18, **SMOKE)
FACENET = TargetConfig(arch="inception_resnet", loss="triplet", **SMOKE)


def randomised(module: torch.nn.Module) -> torch.nn.Module:
    """Perturb every float tensor so that a wrong mapping cannot go unnoticed."""
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if name.endswith("running_var"):
                tensor.mul_(1.0 + 0.1 * torch.rand_like(tensor))
            elif tensor.is_floating_point():
                tensor.add_(0.05 * torch.randn_like(tensor))
    return module.eval()


def outputs(target: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        return target.eval()(x)


def one_line(err: pytest.ExceptionInfo[BaseException]) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


def test_own_format_round_trips(tmp_path: Path) -> None:
    target = build_target(ARCFACE_18, num_classes=4)
    randomised(target)
    assert isinstance(target, OpenSetModel)
    target.enrol(torch.randn(4, 16))
    path = tmp_path / "t" / "arcface.pt"
    sha = save_checkpoint(path, target, ARCFACE_18, metrics={"train_accuracy": 0.9},
                          data_fingerprint="abc123")
    assert [p.name for p in path.parent.iterdir()] == ["arcface.pt"]  # no temp file left
    loaded = load_checkpoint(path)
    assert loaded.config == ARCFACE_18 and loaded.sha256 == sha
    assert loaded.metrics == {"train_accuracy": 0.9} and loaded.data_fingerprint == "abc123"
    x = torch.rand(2, 3, 40, 40)
    for got, want in zip(outputs(loaded.target, x), outputs(target, x), strict=True):
        assert torch.isfinite(want).all() and torch.equal(got, want)
    published = import_checkpoint(path, ARCFACE_18)
    assert "gallery" not in published and "fc.weight" in published
    payload = torch.load(path, weights_only=True)
    assert {"arch", "config", "state_dict", "metrics", "data_fingerprint", "sha256"} <= set(payload)
    assert payload["sha256"] == tensors_sha256(target.state_dict())


def test_edited_tensors_fail_the_sha256_check(tmp_path: Path) -> None:
    path = tmp_path / "t.pt"
    save_checkpoint(path, build_target(KEDMI_IR, 3), KEDMI_IR)
    payload = torch.load(path, weights_only=True)
    payload["state_dict"]["backbone.fc_layer.bias"] += 1.0
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="sha256") as err:
        load_checkpoint(path)
    one_line(err)


def kedmi_file(path: Path, source: torch.nn.Module) -> None:
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}, path)


def mia_v2_file(path: Path, source: torch.nn.Module) -> None:
    torch.save({"model_name": "ir152_64", "config": {"num_classes": 5, "resolution": 32},
                "state_dict": source.state_dict(), "test_acc": 91.2}, path)


def ppa_file(path: Path, source: torch.nn.Module) -> None:
    torch.save({"epoch": 3, "model_state_dict": {f"model.{k}": v
                                                 for k, v in source.state_dict().items()},
                "optimizer_state_dict": {"state": {}, "param_groups": [{"lr": 0.1}]}}, path)


@pytest.mark.parametrize("writer", [kedmi_file, mia_v2_file, ppa_file])
def test_released_closed_set_formats_import_strictly(tmp_path: Path, writer: Any) -> None:
    source = randomised(build_backbone(KEDMI_IR, num_classes=5))
    path = tmp_path / "target.tar"
    writer(path, source)
    state = import_checkpoint(path, KEDMI_IR)
    assert "fc_layer.weight" in state and "feature.input_layer.0.weight" in state
    target = build_target(KEDMI_IR, num_classes=5)
    assert isinstance(target, ClosedSetModel)
    target.load_published(state, str(path))
    x = torch.rand(2, 3, 32, 32)
    logits, features = outputs(target, x)
    with torch.no_grad():
        expected = source.embed(target.preprocess(x))
        assert torch.isfinite(expected).all()
        assert torch.equal(features, expected) and torch.equal(logits, source.classify(expected))


def test_insightface_backbone_imports_into_an_open_set_target(tmp_path: Path) -> None:
    source = randomised(build_backbone(ARCFACE_18))
    path = tmp_path / "backbone.pth"
    torch.save(source.state_dict(), path)
    target = build_target(ARCFACE_18, num_classes=3)
    target.load_published(import_checkpoint(path, ARCFACE_18))
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        expected = source.embed(target.preprocess(x))
    assert torch.isfinite(expected).all() and torch.equal(outputs(target, x)[1], expected)


def test_facenet_classifier_is_dropped_for_an_open_set_target(tmp_path: Path) -> None:
    source = randomised(build_backbone(FACENET, num_classes=7))  # like vggface2's logits
    path = tmp_path / "facenet.pt"
    torch.save(source.state_dict(), path)
    state = import_checkpoint(path, FACENET)
    assert state["logits.weight"].shape == (7, 16)
    target = build_target(FACENET, num_classes=3)
    target.load_published(state)
    assert torch.equal(target.state_dict()["backbone.last_bn.weight"], state["last_bn.weight"])


def test_missing_batchnorm_counters_are_filled(tmp_path: Path) -> None:
    state = {k: v for k, v in build_backbone(ARCFACE_18).state_dict().items()
             if not k.endswith("num_batches_tracked")}
    torch.save(state, tmp_path / "old.pth")
    assert "bn1.num_batches_tracked" in import_checkpoint(tmp_path / "old.pth", ARCFACE_18)


def test_wrong_architecture_lists_the_keys(tmp_path: Path) -> None:
    path = tmp_path / "r18.pth"
    torch.save(build_backbone(ARCFACE_18).state_dict(), path)
    deeper = TargetConfig(arch="iresnet", depth=34, **SMOKE)
    with pytest.raises(CheckpointError, match=r"missing keys \d+ \(layer") as err:
        import_checkpoint(path, deeper)
    assert "…" in one_line(err)
    wider = TargetConfig(arch="iresnet", depth=18, **{**SMOKE, "width": 0.125})
    with pytest.raises(CheckpointError, match="shape mismatches") as err:
        import_checkpoint(path, wider)
    one_line(err)
    with pytest.raises(CheckpointError, match="unexpected keys"):
        import_checkpoint(path, KEDMI_IR)


def test_truncated_file_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "cut.pth"
    torch.save(build_backbone(ARCFACE_18).state_dict(), path)
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(CheckpointError, match="truncated or corrupt") as err:
        import_checkpoint(path, ARCFACE_18)
    one_line(err)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nowhere.pt")


def test_a_file_that_is_no_torch_save_output_is_one_line(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("hello, these are notes\n")  # torch.load: KeyError: 101
    with pytest.raises(CheckpointError, match=r"notes.txt is not a PyTorch checkpoint \(neither "
                       "a zip archive nor a pickle") as err:
        import_checkpoint(notes, ARCFACE_18)
    one_line(err)
    legacy = tmp_path / "legacy.pt"
    torch.save(build_backbone(ARCFACE_18).state_dict(), legacy,
               _use_new_zipfile_serialization=False)
    assert set(import_checkpoint(legacy, ARCFACE_18)) == set(
        build_backbone(ARCFACE_18).state_dict())


class Payload:
    """Unpickling this would create a file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return open, (str(self.marker), "w")


@pytest.mark.parametrize("container", ["torch", "pickle"])
def test_malicious_pickle_is_refused_and_never_runs(tmp_path: Path, container: str) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.tar"
    payload = {"state_dict": {"fc.weight": torch.zeros(1)}, "hook": Payload(marker)}
    if container == "torch":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=2))
    assert not marker.exists()
    for load in (lambda: import_checkpoint(path, ARCFACE_18), lambda: load_checkpoint(path)):
        with pytest.raises(CheckpointError, match="pickled code") as err:
            load()
        assert "refused" in one_line(err)
    assert not marker.exists()


def test_unrecognised_and_foreign_files(tmp_path: Path) -> None:
    torch.save([torch.zeros(1)], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="unrecognised checkpoint layout"):
        import_checkpoint(tmp_path / "list.pt", ARCFACE_18)
    torch.save(build_backbone(ARCFACE_18).state_dict(), tmp_path / "bare.pth")
    with pytest.raises(CheckpointError, match="import_checkpoint"):
        load_checkpoint(tmp_path / "bare.pth")
