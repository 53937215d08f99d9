"""Second evaluator (eval2_acc1/5, transfer_gap) and the verification view (sar_far1e-3):
known answers on hand-made models, images and Gaussian scores (issue 19 items 4 and 6)."""

from __future__ import annotations

import pytest
import torch

from mibench.errors import ConfigError
from mibench.metrics import MetricUnavailable, PrivateReference, evaluate
from mibench.metrics.verification import FAR, far_threshold, genuine_scores, impostor_scores
from mibench.runconfig import RunConfig
from mibench.target import OpenSetTarget, Target
from mibench.world import Split

CLASSES = 10
SIDE = 4


class NearestColour(Target):
    """Closed set without a linear head: logits = −‖mean colour − prototype‖²."""

    def __init__(self, prototypes: torch.Tensor) -> None:
        super().__init__(num_classes=prototypes.shape[0], resolution=SIDE, feature_dim=3,
                         mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
        self.register_buffer("prototypes", prototypes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        return -torch.cdist(features, self.prototypes).square()


class Pixels(OpenSetTarget):
    """Open set whose embedding is the centred pixels (48-d); gallery = identity means."""

    def __init__(self, gallery: torch.Tensor) -> None:
        super().__init__(num_classes=gallery.shape[0], resolution=SIDE,
                         feature_dim=3 * SIDE * SIDE, mean=(0.5, 0.5, 0.5), std=(1.0, 1.0, 1.0))
        self.enrol(gallery)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)


def colour_prototypes(seed: int = 0) -> torch.Tensor:
    return torch.rand(CLASSES, 3, generator=torch.Generator().manual_seed(seed)) * 0.8 + 0.1


def split(name: str, images: torch.Tensor, labels: torch.Tensor) -> Split:
    return Split(name, (images * 255).round().to(torch.uint8), labels, labels.clone())


def identity_images(centres: torch.Tensor, labels: torch.Tensor, seed: int,
                    noise: float) -> torch.Tensor:
    """Images of ``labels``: centre (C×3×SIDE×SIDE, in [0,1]) plus Gaussian pixel noise."""
    gen = torch.Generator().manual_seed(seed)
    return (centres[labels] + noise * torch.randn(len(labels), 3, SIDE, SIDE, generator=gen)
            ).clamp(0, 1)


def colour_images(labels: torch.Tensor, seed: int) -> torch.Tensor:
    flat = colour_prototypes().view(CLASSES, 3, 1, 1).expand(-1, 3, SIDE, SIDE)
    return identity_images(flat, labels, seed, noise=0.01)


def colour_reference(eval2: Target | None) -> PrivateReference:
    labels = torch.arange(CLASSES).repeat(3)
    return PrivateReference(split("private-train", colour_images(labels, 1), labels),
                            NearestColour(colour_prototypes()), eval2_model=eval2)


LABELS = torch.arange(CLASSES).repeat_interleave(20)


def scores(images: torch.Tensor, private: PrivateReference, names: list[str],
           labels: torch.Tensor = LABELS) -> dict[str, float | None]:
    target = NearestColour(colour_prototypes())
    return {r.name: r.value for r in evaluate(images, labels, target=target, private=private,
                                              metrics=names)}


def test_eval2_is_high_on_identity_images_and_chance_on_noise():
    private = colour_reference(NearestColour(colour_prototypes()))
    names = ["eval2_acc1", "eval2_acc5", "transfer_gap"]
    clean = scores(colour_images(LABELS, 2), private, names)
    assert clean == {"eval2_acc1": 1.0, "eval2_acc5": 1.0, "transfer_gap": 0.0}
    noise = torch.rand(len(LABELS), 3, SIDE, SIDE, generator=torch.Generator().manual_seed(3))
    # uniform noise has mean colour ≈ 0.5 grey: one class for every image, 1 of 10 labels right
    assert scores(noise, private, ["eval2_acc1"])["eval2_acc1"] == pytest.approx(0.1, abs=0.05)


def test_transfer_gap_is_what_the_first_evaluator_grants_and_the_second_does_not():
    fooled = NearestColour(colour_prototypes().roll(1, dims=0))   # sees identity k as k+1
    got = scores(colour_images(LABELS, 2), colour_reference(fooled),
                 ["eval_acc1", "eval2_acc1", "transfer_gap"])
    assert got == {"eval_acc1": 1.0, "eval2_acc1": 0.0, "transfer_gap": 1.0}


def test_without_a_second_evaluator_its_metrics_say_why():
    results = evaluate(colour_images(LABELS, 2), LABELS, target=NearestColour(colour_prototypes()),
                       private=colour_reference(None), metrics=["eval2_acc1", "transfer_gap"])
    assert all(r.value is None and "run.eval2_model is 'none'" in r.reason for r in results)


def test_eval2_model_is_validated():
    assert RunConfig.resolve("smoke", {"eval2_model": "none"}).eval2_model == "none"
    assert RunConfig.resolve("smoke").eval2_model == "resnet-18"
    with pytest.raises(ConfigError, match="unknown evaluation model"):
        RunConfig.resolve("smoke", {"eval2_model": "nope"})
    with pytest.raises(ConfigError, match="already the first evaluation model"):
        RunConfig.resolve("smoke", {"eval2_model": "densenet-121"})
    with pytest.raises(ConfigError, match="trained here as a target"):
        RunConfig.resolve("smoke", {"eval2_model": "arcface"})


def test_far_threshold_gives_the_asked_false_accept_rate_on_gaussian_pairs():
    gen = torch.Generator().manual_seed(0)
    tau = far_threshold(torch.randn(200_000, generator=gen))
    assert tau == pytest.approx(3.09, abs=0.05)   # Φ⁻¹(1 − 1e-3)
    fresh = torch.randn(1_000_000, generator=gen)
    assert (fresh > tau).float().mean().item() == pytest.approx(FAR, rel=0.2)


def test_far_threshold_refuses_too_few_impostor_pairs():
    far_threshold(torch.randn(1000))
    with pytest.raises(MetricUnavailable, match="at least 1000 impostor pairs.*gives 999"):
        far_threshold(torch.randn(999))


def test_impostor_and_genuine_scores_pair_each_row_with_the_right_templates():
    templates = torch.eye(3)
    features = torch.tensor([[1.0, 0, 0], [0, 2.0, 2.0]])
    labels = torch.tensor([0, 1])
    assert genuine_scores(features, labels, templates).tolist() == pytest.approx([1.0, 2 ** -0.5])
    assert sorted(impostor_scores(features, labels, templates).tolist()) == pytest.approx(
        [0.0, 0.0, 0.0, 2 ** -0.5])


def pixel_world(identities: int = 50, test_per_identity: int = 8):
    """Identity centres, an open-set target enrolled with them, and a private-test split."""
    gen = torch.Generator().manual_seed(4)
    centres = (0.5 + 0.12 * torch.randn(identities, 3, SIDE, SIDE, generator=gen)).clamp(0, 1)
    target = Pixels((centres - 0.5).flatten(1))
    test_labels = torch.arange(identities).repeat_interleave(test_per_identity)
    test = split("private-test", identity_images(centres, test_labels, 5, 0.1), test_labels)
    train_labels = torch.arange(identities)
    private = PrivateReference(split("private-train", centres, train_labels),
                               NearestColour(colour_prototypes()), test_split=test)
    return centres, target, private


def test_verification_accepts_the_identity_and_rejects_others_at_about_far():
    centres, target, private = pixel_world()
    labels = torch.arange(len(centres)).repeat_interleave(40)
    own = identity_images(centres, labels, 6, 0.1)
    other = identity_images(centres, (labels + 1) % len(centres), 6, 0.1)  # someone else
    sar = {name: evaluate(images, labels, target=target, private=private,
                          metrics=["sar_far1e-3"])[0].value
           for name, images in (("own", own), ("other", other))}
    assert sar["own"] > 0.9
    assert sar["other"] <= 5 * FAR


def test_verification_says_why_when_pairs_are_too_few_or_templates_missing():
    centres, target, private = pixel_world(identities=8, test_per_identity=2)  # 112 pairs
    labels = torch.arange(8)
    result = evaluate(centres, labels, target=target, private=private,
                      metrics=["sar_far1e-3"])[0]
    assert result.value is None and "gives 112" in result.reason
    closed = evaluate(colour_images(LABELS, 2), LABELS, target=NearestColour(colour_prototypes()),
                      private=pixel_world()[2], metrics=["sar_far1e-3"])[0]
    assert closed.value is None and "no linear head" in closed.reason


def test_the_threshold_is_computed_once_per_target_state():
    centres, target, private = pixel_world()
    labels = torch.arange(len(centres))
    first = evaluate(centres, labels, target=target, private=private, metrics=["sar_far1e-3"])
    assert len(private.thresholds) == 1
    evaluate(centres, labels, target=target, private=private, metrics=["sar_far1e-3"])
    assert len(private.thresholds) == 1
    target.enrol(torch.randn(len(centres), 3 * SIDE * SIDE))   # another gallery: another τ
    second = evaluate(centres, labels, target=target, private=private, metrics=["sar_far1e-3"])
    assert len(private.thresholds) == 2 and first[0].value == 1.0 != second[0].value
