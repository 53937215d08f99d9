"""Models whose weights users already have: PPA's torchvision ResNet-152 targets and KEDMI's
FaceNet evaluation model (import only), each checked against the published layout (torchvision
itself; a faithful re-implementation of KEDMI's code in ``kedmi_facenet_reference.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision
from kedmi_facenet_reference import FaceNet, released_checkpoint
from torch import nn

from mibench.cache import Cache
from mibench.errors import ConfigError
from mibench.targets import zoo
from mibench.targets.architectures import ResNet
from mibench.targets.config import TargetConfig
from mibench.targets.errors import CheckpointError, TargetError
from mibench.targets.models import IMAGENET, build_backbone, build_target, pixel_stats
from mibench.targets.zoo import (awaits_import, get_entry, import_weights, load_entry,
                                 load_evaluator, recipe, recipe_summary, user_weights_path)
from mibench.testing import toy_split
from mibench.world import World

SMALL_FACENET = {"width": 0.0625, "resolution": 32, "feature_dim": 16}


@pytest.fixture(scope="module")
def world() -> World:
    splits = [toy_split(4, 4, seed=0, noise=0.3, name="private-train"),
              toy_split(4, 2, seed=1, noise=0.3, name="private-test"),
              toy_split(4, 2, seed=2, identity_offset=100, noise=0.3, name="public")]
    return World(name="toy", fingerprint="toy-0002", splits={s.name: s for s in splits})


def shapes(state: dict[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state.items()}


@pytest.mark.parametrize("depth", [18, 34, 50, 101, 152])
def test_resnet_has_torchvisions_state_dict(depth: int) -> None:
    with torch.device("meta"):
        ours = ResNet(depth, num_classes=1000).state_dict()
        published = getattr(torchvision.models, f"resnet{depth}")(weights=None).state_dict()
    assert shapes(ours) == shapes(published)


def test_resnet_computes_torchvisions_features_and_scales_its_width() -> None:
    torch.manual_seed(0)
    published = torchvision.models.resnet18(weights=None).eval()
    ours = ResNet(18, num_classes=1000).eval()
    ours.load_state_dict(published.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(ours.classify(ours.embed(x)), published(x), atol=1e-5)
    small = ResNet(50, width=0.125, num_classes=3)
    assert small.feature_dim == 256 and small.conv1.out_channels == 8
    assert small.classify(small.embed(torch.randn(2, 3, 32, 32))).shape == (2, 3)
    with pytest.raises(ValueError, match="at least 32 px"):
        small.embed(torch.randn(1, 3, 16, 16))


def test_resnet_config_checks_and_pixel_norms() -> None:
    cfg = get_entry("resnet152").resolve("paper")
    assert (cfg.arch, cfg.depth, cfg.kind, cfg.width) == ("resnet", 152, "closed", 1.0)
    assert pixel_stats(cfg)[0] == (0.5, 0.5, 0.5)
    assert pixel_stats(TargetConfig(arch="resnet", kind="closed", loss="softmax",
                                    pixel_norm="imagenet")) == IMAGENET
    assert get_entry("resnet152").resolve("mini").width == 0.125
    with pytest.raises(ConfigError, match="closed-set classifier"):
        TargetConfig(arch="resnet", depth=152)
    with pytest.raises(ConfigError, match="resnet networks have no dropout"):
        TargetConfig(arch="resnet", depth=18, kind="closed", loss="softmax", dropout=0.1)


def test_ppa_resnet_checkpoint_imports_strictly(world: World, cache: Cache,
                                                tmp_path: Path) -> None:
    """A PPA ResNet (-50 here to stay fast; the layout test covers -152) into ``resnet152``."""
    torch.manual_seed(0)
    published = torchvision.models.resnet50(weights=None)
    published.fc = nn.Linear(published.fc.in_features, world.num_private)  # PPA's resized fc
    file = tmp_path / "resnet50_celeba.pth"
    torch.save({"epoch": 3, "model_state_dict": {f"model.{k}": v
                                                 for k, v in published.state_dict().items()}},
               file)
    import_weights(file, "resnet152", world, cache, "smoke", {"width": 1.0, "depth": 50})
    model = load_entry(get_entry("resnet152"), world, cache, "smoke", progress=False)
    assert model.source == "user" and model.config is not None and model.config.width == 1.0
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model.target(x)[0], published.eval()((x - 0.5) / 0.5), atol=1e-4)


def small_facenet(num_classes: int, seed: int = 0) -> FaceNet:
    """The reference at test width, with BN statistics moved off their initial values."""
    torch.manual_seed(seed)
    model = FaceNet(num_classes, widths=(4, 8, 16, 32), side=32, embedding=16)
    for module in model.modules():
        if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    return model.eval()


def test_kedmi_facenet_key_layout_is_the_published_one() -> None:
    with torch.device("meta"):
        published = FaceNet(1000).state_dict()
        ours = build_backbone(get_entry("kedmi-facenet").resolve("paper"), 1000).state_dict()
    assert shapes(ours) == shapes(published)
    assert get_entry("kedmi-facenet").resolve("smoke").resolution == 112


def test_kedmi_facenet_without_weights_says_where_to_get_them(world: World,
                                                              cache: Cache) -> None:
    entry = get_entry("kedmi-facenet")
    assert entry.imported and entry.role == "evaluator"
    assert zoo.entry_status(entry, world, cache, "smoke").state == "not imported"
    assert awaits_import(entry, cache, "smoke") and not awaits_import(get_entry("ir152"), cache,
                                                                      "smoke")
    assert recipe_summary(entry, "smoke") == "imported only"
    assert recipe(entry, "paper")["imported"] == "mibench zoo import FILE --as kedmi-facenet"
    with pytest.raises(TargetError) as err:
        load_evaluator(world, cache, "smoke", progress=False, name="kedmi-facenet")
    message = str(err.value)
    assert "kedmi-facenet is never trained here; get FaceNet_95.88.tar" in message
    assert "`mibench zoo import FILE --as kedmi-facenet`" in message
    assert str(user_weights_path(cache, "smoke", "kedmi-facenet")) in message
    assert "\n" not in message


def test_kedmi_facenet_release_imports_and_computes_the_reference(
        world: World, cache: Cache, tmp_path: Path) -> None:
    reference = small_facenet(world.num_private)
    file = tmp_path / "FaceNet_95.88.tar"
    torch.save(released_checkpoint(reference), file)
    import_weights(file, "kedmi-facenet", world, cache, "smoke", SMALL_FACENET)
    evaluator = load_evaluator(world, cache, "smoke", progress=False, name="kedmi-facenet")
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        logits, features = evaluator(x)
        feat, out = reference(x)   # KEDMI feeds [0, 1] images
    assert torch.allclose(features, feat, atol=1e-5) and torch.allclose(logits, out, atol=1e-5)
    assert zoo.entry_status(get_entry("kedmi-facenet"), world, cache, "smoke").state == \
        "user weights"
    assert not awaits_import(get_entry("kedmi-facenet"), cache, "smoke")


def _released(tmp_path: Path, state: dict[str, torch.Tensor]) -> Path:
    file = tmp_path / "FaceNet_95.88.tar"
    torch.save({"state_dict": state}, file)
    return file


@pytest.mark.parametrize(("edit", "message"), [
    (lambda s: s.pop("module.fc_layer.bias"), r"missing keys 1 \(fc_layer\.bias\)"),
    (lambda s: s.update({"module.feature.extra": torch.zeros(1)}),
     r"unexpected keys 1 \(feature\.extra\)"),
    (lambda s: s.update({"module.fc_layer.bias": torch.zeros(5)}),
     r"1 shape mismatches \(e\.g\. fc_layer\.bias: checkpoint \(5,\) vs model \(4,\)\)"),
])
def test_kedmi_facenet_import_is_strict(world: World, cache: Cache, tmp_path: Path, edit,
                                        message: str) -> None:
    state = released_checkpoint(small_facenet(world.num_private))["state_dict"]
    edit(state)
    with pytest.raises(CheckpointError, match=f"does not fit the architecture: {message}"):
        import_weights(_released(tmp_path, state), "kedmi-facenet", world, cache, "smoke",
                       SMALL_FACENET)
    assert not user_weights_path(cache, "smoke", "kedmi-facenet").exists()


def test_a_text_file_or_another_world_gives_one_line_errors(world: World, cache: Cache,
                                                           tmp_path: Path) -> None:
    text = tmp_path / "FaceNet_95.88.tar"
    text.write_text("a download page, not the weights\n")
    with pytest.raises(CheckpointError) as err:
        import_weights(text, "kedmi-facenet", world, cache, "smoke", SMALL_FACENET)
    assert "is not a PyTorch checkpoint" in str(err.value) and "\n" not in str(err.value)
    wider = small_facenet(world.num_private + 1)
    with pytest.raises(TargetError, match="classify 5 identities but world toy has 4"):
        import_weights(_released(tmp_path, released_checkpoint(wider)["state_dict"]),
                       "kedmi-facenet", world, cache, "smoke", SMALL_FACENET)


def test_build_target_of_the_imported_entry_is_an_ir50_at_112() -> None:
    cfg = get_entry("kedmi-facenet").resolve("mini")
    assert (cfg.arch, cfg.depth, cfg.layout, cfg.pixel_norm) == ("irse", 50, "evolve112", "none")
    with torch.device("meta"):
        target = build_target(cfg, 1000)
    assert target.resolution == 112 and target.num_classes == 1000
