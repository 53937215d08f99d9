"""dlib's ResNet face descriptor: our .dat parser and PyTorch port against dlib-bin (assets.md
§4), on real faces that ship in packages (assets.md §3): scikit-image's astronaut (aligned by
dlib's own 5-point chip) and LFW crops from ``skimage.data.lfw_subset``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mibench.targets import zoo
from mibench.targets.dlib_format import read_dlib_net
from mibench.targets.dlib_resnet import (FEATURE_DIM, DlibResNet, dlib_weights_path,
                                         load_dlib_resnet, padded_add)
from mibench.targets.errors import CheckpointError, TargetError

PARITY_TOLERANCE = 1e-4
LFW_FACES = 12  # the first 100 images of lfw_subset are faces


def weights() -> Path:
    pytest.importorskip("face_recognition_models", reason="pip install 'mibench[dlib]'")
    return dlib_weights_path()


def test_padded_add_zero_pads_channels_and_space_at_the_end() -> None:
    a = torch.ones(1, 2, 4, 4)
    b = torch.full((1, 3, 3, 3), 2.0)
    out = padded_add(a, b)
    assert out.shape == (1, 3, 4, 4)
    assert out[0, 0, 0, 0] == 3 and out[0, 0, 3, 3] == 1 and out[0, 2, 3, 3] == 0
    assert out[0, 2, 0, 0] == 2


def test_parser_reads_the_shipped_network() -> None:
    net = read_dlib_net(weights())
    assert net.num_parameters() == 5_614_592
    assert net.input_size == 150
    assert net.mean == pytest.approx((122.782, 117.001, 104.298), abs=1e-3)
    assert len(net.convs) == len(net.affines) == 29
    assert net.convs[0].weight.shape == (32, 3, 7, 7) and net.convs[0].stride == 2
    assert net.fc is not None and net.fc.shape == (256, FEATURE_DIM)


def test_model_is_differentiable_and_resizes_any_input() -> None:
    model = load_dlib_resnet(3, weights())
    x = torch.rand(2, 3, 112, 112, requires_grad=True)
    logits, features = model(x)
    assert logits.shape == (2, 3) and features.shape == (2, FEATURE_DIM)
    features.sum().backward()
    assert x.grad is not None and bool(x.grad.abs().sum() > 0)


def test_broken_files_are_one_line_errors(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    junk = tmp_path / "junk.dat"
    junk.write_bytes(b"not a dlib file" * 10)
    with pytest.raises(CheckpointError, match="holds no dlib network"):
        read_dlib_net(junk)
    truncated = tmp_path / "truncated.dat"
    truncated.write_bytes(weights().read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="truncated"):
        read_dlib_net(truncated)
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(TargetError, match=r"pip install 'mibench\[dlib\]'"):
        dlib_weights_path()


def lfw_chips(count: int) -> list[np.ndarray]:
    """Real LFW faces (25×25 grey, shipped by scikit-image) as 150×150 RGB uint8 chips."""
    data = pytest.importorskip("skimage.data")
    faces = data.lfw_subset()[:count]
    chips = []
    for face in faces:
        grey = Image.fromarray((face * 255).round().astype(np.uint8)).resize((150, 150),
                                                                              Image.BILINEAR)
        chips.append(np.ascontiguousarray(np.stack([np.asarray(grey)] * 3, axis=-1)))
    return chips


def astronaut_chips(dlib: object) -> list[np.ndarray]:
    """The astronaut's face aligned by dlib's detector, 5-point predictor and face chip."""
    import face_recognition_models

    data = pytest.importorskip("skimage.data")
    image = data.astronaut()
    faces = dlib.get_frontal_face_detector()(image, 1)  # type: ignore[attr-defined]
    predictor = dlib.shape_predictor(  # type: ignore[attr-defined]
        face_recognition_models.pose_predictor_five_point_model_location())
    assert len(faces) >= 1
    chip = dlib.get_face_chip(image, predictor(image, faces[0]),  # type: ignore[attr-defined]
                              size=150, padding=0.25)
    return [chip, np.ascontiguousarray(chip[:, ::-1])]


def test_embeddings_match_dlib_on_real_faces() -> None:
    dlib = pytest.importorskip("dlib", reason="the parity oracle is dlib-bin")
    path = weights()
    chips = astronaut_chips(dlib) + lfw_chips(LFW_FACES)
    oracle = dlib.face_recognition_model_v1(str(path))
    expected = np.array([np.array(oracle.compute_face_descriptor(chip)) for chip in chips])
    model: DlibResNet = load_dlib_resnet(1, path)
    batch = torch.from_numpy(np.stack(chips)).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        ours = model(batch)[1].double().numpy()
    difference = float(np.abs(ours - expected).max())
    print(f"dlib-resnet parity on {len(chips)} real faces: max |diff| = {difference:.3g}")
    assert difference < PARITY_TOLERANCE
    distance = float(np.linalg.norm(expected[0] - expected[1]))
    assert distance < 0.6  # dlib's same-person threshold: the astronaut and her mirror image


def test_zoo_entry_is_pretrained_open_set_and_an_evaluation_model() -> None:
    entry = zoo.get_entry("dlib-resnet")
    assert isinstance(entry, zoo.PretrainedEntry) and entry.kind == "open"
    assert zoo.evaluator_entry("dlib-resnet") is entry
    with pytest.raises(TargetError, match="trained here as a target"):
        zoo.evaluator_entry("arcface")
    with pytest.raises(TargetError,
                       match="choose one of densenet-121, kedmi-facenet, resnet-18, dlib-resnet"):
        zoo.evaluator_entry("nope")
    with pytest.raises(TargetError, match="nothing to import"):
        zoo.import_weights("x.pt", "dlib-resnet", None, None)  # type: ignore[arg-type]


def test_zoo_enrols_the_private_gallery_once_and_caches_it(tmp_path: Path) -> None:
    from mibench.cache import Cache
    from mibench.world import Split, World

    weights()
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(3).repeat_interleave(2)
    images = (torch.rand(6, 3, 32, 32, generator=generator) * 255).to(torch.uint8)
    split = Split("private-train", images, labels, labels)
    world = World("toy", "toy-dlib", {"private-train": split,
                                      "private-test": Split("private-test", images, labels,
                                                            labels)})
    cache = Cache(tmp_path)
    entry = zoo.get_entry("dlib-resnet")
    first = zoo.load_entry(entry, world, cache, "smoke", progress=False)
    assert first.source == "pretrained" and first.metrics["private_train_accuracy"] == 1.0
    assert zoo.entry_status(entry, world, cache, "smoke").state == "pretrained, gallery cached"
    again = zoo.load_entry(entry, world, cache, "smoke", progress=False)
    assert torch.equal(first.target.gallery, again.target.gallery)
