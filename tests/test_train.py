"""The trainer: closed- and open-set targets learn toy identities; seeding; enrolment."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mibench.targets import OpenSetModel, TargetConfig, TargetError, build_target, train_target
from mibench.targets.models import embed_split
from mibench.errors import ConfigError
from mibench.targets.config import ADDED_KNOBS
from mibench.targets.train import accuracy, augment, identity_batches, identity_labelled
from mibench.testing import toy_split
from mibench.world import UNLABELLED


def smoke(**overrides: object) -> TargetConfig:
    return TargetConfig.resolve("smoke", {"depth": 18, **overrides})


def test_closed_set_target_learns_toy_identities() -> None:
    train, test = toy_split(8, 12), toy_split(8, 6, seed=1)
    cfg = smoke(arch="irse", depth=50, kind="closed", loss="softmax", epochs=4)
    untrained = accuracy(build_target(cfg, 8), test)
    target, metrics = train_target(cfg, train=train, val=test, progress=False)
    assert untrained < 0.5
    assert metrics.train_accuracy >= 0.9 and metrics.val_accuracy is not None
    assert metrics.val_accuracy >= 0.9
    assert metrics.steps == 4 * 6 and metrics.wall_time_s > 0
    assert target.kind == "closed" and not target.training


@pytest.mark.parametrize("loss", ["arcface", "cosface", "triplet"])
def test_open_set_target_trained_on_public_identities_recognises_private_ones(loss: str) -> None:
    public = toy_split(16, 12, identity_offset=100, name="public")
    private_train, private_test = toy_split(8, 12), toy_split(8, 6, seed=1)
    cfg = smoke(arch="iresnet", kind="open", loss=loss, epochs=6)
    untrained = build_target(cfg, 8)
    assert isinstance(untrained, OpenSetModel)
    untrained.enrol_from_split(private_train)
    target, metrics = train_target(cfg, train=public, val=private_test, gallery=private_train,
                                   progress=False)
    assert metrics.val_accuracy is not None
    assert metrics.val_accuracy >= 0.85 > accuracy(untrained, private_test) + 0.3
    assert metrics.train_accuracy >= 0.9


@pytest.mark.parametrize("kind,loss", [("closed", "softmax"), ("open", "arcface")])
def test_training_is_seeded(kind: str, loss: str) -> None:
    train = toy_split(4, 8)
    cfg = smoke(arch="iresnet", kind=kind, loss=loss, epochs=1, batch_size=8)
    first, _ = train_target(cfg, train=train, gallery=train, progress=False)
    torch.rand(10)  # global RNG state must not matter
    second, _ = train_target(cfg, train=train, gallery=train, progress=False)
    second_state = second.state_dict()
    for name, value in first.state_dict().items():
        assert torch.equal(value, second_state[name]), name


def test_gallery_is_the_normalised_mean_embedding_per_identity() -> None:
    split = toy_split(3, 4)
    target = build_target(smoke(arch="iresnet"), 3)
    assert isinstance(target, OpenSetModel)
    target.enrol_from_split(split)
    features = F.normalize(embed_split(target, split), dim=1)
    expected = F.normalize(features.view(3, 4, -1).mean(1), dim=1)
    assert torch.allclose(target.gallery, expected, atol=1e-6)
    with pytest.raises(TargetError, match="identities"):
        target.enrol_from_split(toy_split(2, 4))


def test_open_set_training_needs_labels_and_a_gallery() -> None:
    public = toy_split(4, 4)
    with pytest.raises(TargetError, match="gallery"):
        train_target(smoke(arch="iresnet"), train=public, progress=False)
    public.labels[:] = UNLABELLED
    with pytest.raises(TargetError, match="no identity labels"):
        identity_labelled(public)


def test_identity_labelled_renumbers_and_drops_unlabelled() -> None:
    split = toy_split(3, 2)
    split.labels = torch.tensor([7, 7, UNLABELLED, 9, 4, 4])
    kept = identity_labelled(split)
    assert kept.labels.tolist() == [1, 1, 2, 0, 0] and len(kept) == 5


def test_triplet_batches_hold_k_images_of_p_identities() -> None:
    labels = torch.arange(6).repeat_interleave(5)
    for batch in identity_batches(labels, 8, 4, torch.Generator().manual_seed(0)):
        counts = torch.bincount(labels[batch])
        assert sorted(counts[counts > 0].tolist()) == [4, 4]


def test_augmentation_is_light_and_seeded() -> None:
    images = toy_split(2, 4).float_images()
    a = augment(images, torch.Generator().manual_seed(3))
    b = augment(images, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.shape == images.shape
    assert a.min() >= 0 and a.max() <= 1
    assert (a.mean((1, 2, 3)) - images.mean((1, 2, 3))).abs().max() < 0.1  # colour kept


def test_added_knobs_train_a_closed_set_target_and_are_validated() -> None:
    train, test = toy_split(8, 12), toy_split(8, 6, seed=1)
    cfg = smoke(arch="iresnet", kind="closed", loss="softmax", epochs=8,
                label_smoothing=0.1, warmup_epochs=2, dropout=0.1)
    _, metrics = train_target(cfg, train=train, val=test, progress=False)
    assert metrics.val_accuracy is not None and metrics.val_accuracy >= 0.8
    assert metrics.cpu_time_s > 0
    with pytest.raises(ConfigError, match="softmax"):
        smoke(loss="arcface", label_smoothing=0.1)
    with pytest.raises(ConfigError, match="dropout"):
        smoke(arch="irse", depth=50, kind="closed", loss="softmax", dropout=0.1)


def test_config_identity_leaves_out_added_knobs_that_are_off() -> None:
    plain = smoke()
    assert plain.identity() == {k: v for k, v in plain.to_dict().items()
                                if k not in ADDED_KNOBS}
    assert smoke(warmup_epochs=1).identity()["warmup_epochs"] == 1


def test_dropout_defaults_to_the_architectures_published_value() -> None:
    def rates(**overrides: object) -> list[float]:
        target = build_target(smoke(**overrides), 4)
        return [float(getattr(m, "p", getattr(m, "drop_rate", -1))) for m in target.modules()
                if isinstance(m, torch.nn.Dropout) or hasattr(m, "drop_rate")]

    facenet = {"arch": "inception_resnet", "loss": "triplet"}
    densenet = {"arch": "densenet", "depth": 121, "kind": "closed", "loss": "softmax"}
    assert set(rates(**facenet)) == {0.6} and set(rates(**facenet, dropout=0.1)) == {0.1}
    assert set(rates(**densenet)) == {0.0} and set(rates(**densenet, dropout=0.2)) == {0.2}
