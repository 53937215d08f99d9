"""The zoo: names, aliases and patterns; evaluation model kept apart; caching; user weights;
fine-tuning rounds (paper Table III). Trained at ``smoke`` size in a tiny hand-made world."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mibench import cli, cli_commands
from mibench.cache import Cache
from mibench.registry import TARGETS
from mibench.targets import (EVALUATORS, OpenSetModel, TargetError, build_target, load_evaluator,
                             load_target, zoo)
from mibench.targets.config import ADDED_KNOBS, CLOSED_SET_RECIPE, TargetConfig
from mibench.targets.zoo import (PretrainedEntry, expand_names, get_entry, import_weights,
                                 load_entry, parameter_count, resolve_device,
                                 user_weights_path)
from mibench.testing import toy_world
from mibench.world import World

DEPTHS = (18, 34, 50, 100)


@pytest.fixture(scope="module")
def world() -> World:
    return toy_world()


def forbid_training(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("the zoo trained a model it should have loaded")

    monkeypatch.setattr(zoo, "train_target", fail)
    monkeypatch.setattr(zoo, "fine_tune", fail)


def test_names_aliases_and_patterns() -> None:
    expected = {f"{loss}-{d}" for loss in ("arcface", "cosface") for d in DEPTHS}
    expected |= {f"{loss}-18@ft{r}" for loss in ("arcface", "cosface") for r in range(1, 5)}
    assert set(TARGETS.names()) == expected | {"ir152", "evolve", "resnet152", "facenet",
                                               "dlib-resnet"}
    assert TARGETS.canonical("arcface") == "arcface-18"
    assert TARGETS.canonical("cosface") == "cosface-18"
    assert {f"arcface-{d}" for d in DEPTHS} <= set(TARGETS.expand("arcface-*"))
    assert TARGETS.expand("cosface-18@ft*") == [f"cosface-18@ft{r}" for r in range(1, 5)]
    assert TARGETS.expand("ir152,arcface,ir152") == ["ir152", "arcface-18"]
    kinds = {name: get_entry(name).resolve("smoke").kind for name in TARGETS.names()
             if not isinstance(get_entry(name), PretrainedEntry)}
    assert {n for n, k in kinds.items() if k == "closed"} == {"ir152", "evolve", "resnet152"}


def test_evaluation_model_is_not_a_target_and_has_its_own_architecture() -> None:
    assert EVALUATORS.names() == ["densenet-121", "kedmi-facenet", "resnet-18"]
    assert "resnet-18" not in TARGETS and "resnet-18" not in TARGETS.expand("resnet*")
    assert "densenet-121" not in TARGETS and "densenet-121" not in TARGETS.expand("all")
    assert "densenet-121" in expand_names("all") and expand_names("densenet") == ["densenet-121"]
    target_archs = {get_entry(n).resolve("paper").arch for n in TARGETS.names()
                    if not isinstance(get_entry(n), PretrainedEntry)}
    evaluator = get_entry("densenet-121").resolve("paper")
    assert evaluator.arch not in target_archs and evaluator.kind == "closed"
    second = get_entry("resnet-18").resolve("paper")  # another family and recipe than the first
    target_models = {(c.arch, c.depth) for c in (get_entry(n).resolve("paper") for n in
                                                 TARGETS.names()
                                                 if not isinstance(get_entry(n), PretrainedEntry))}
    assert (second.arch, second.depth) not in target_models and second.arch != evaluator.arch
    assert (second.seed, second.pixel_norm) != (evaluator.seed, evaluator.pixel_norm)
    with pytest.raises(Exception, match="unknown target"):
        load_target("densenet-121", None, Cache("/nonexistent"))  # type: ignore[arg-type]


def test_paper_preset_trains_the_published_recipe() -> None:
    for name in ("ir152", "evolve", "densenet-121"):
        cfg = get_entry(name).resolve("paper")
        assert (cfg.lr, cfg.weight_decay, cfg.batch_size) == tuple(CLOSED_SET_RECIPE.values())
        assert (cfg.width, cfg.resolution) == (1.0, 112)
    arcface = get_entry("arcface-50").resolve("paper")
    assert (arcface.lr, arcface.epochs, arcface.resolved_margin) == (0.1, 20, 0.5)
    assert get_entry("ir152").resolve("paper").depth == 152
    assert get_entry("evolve").resolve("paper").depth == 50
    ft = get_entry("cosface-18@ft3")
    base = get_entry("cosface-18").resolve("paper")
    assert ft.parent is get_entry("cosface-18@ft2") and ft.base is get_entry("cosface-18")
    resolved = ft.resolve("paper")
    assert (resolved.arch, resolved.depth, resolved.width, resolved.loss) == (
        base.arch, base.depth, base.width, base.loss)
    assert resolved.lr == pytest.approx(base.lr * 0.1)


def test_added_knobs_are_off_in_the_published_recipes() -> None:
    published = TargetConfig()
    for name in expand_names("all"):
        entry = get_entry(name)
        if isinstance(entry, PretrainedEntry):
            continue
        cfg = entry.resolve("paper")
        assert all(getattr(cfg, k) == getattr(published, k) for k in ADDED_KNOBS), name
    assert get_entry("densenet-121").resolve("mini").label_smoothing > 0


def test_second_load_comes_from_the_cache(world: World, cache: Cache,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    first = load_entry(get_entry("arcface"), world, cache, "smoke", progress=False)
    assert first.source == "trained" and first.name == "arcface-18"
    assert isinstance(first.target, OpenSetModel) and first.target.num_classes == 4
    assert 0.0 <= first.metrics["val_accuracy"] <= 1.0
    forbid_training(monkeypatch)
    second = load_entry(get_entry("arcface-18"), world, cache, "smoke", progress=False)
    assert second.source == "cache"
    for key, value in first.target.state_dict().items():
        assert torch.equal(value, second.target.state_dict()[key]), key
    assert load_target("arcface", world, cache, "smoke", progress=False).kind == "open"


def test_fine_tuning_rounds_change_the_model_and_fit_private_train_tighter(
        world: World, cache: Cache) -> None:
    models = [load_entry(get_entry(name), world, cache, "smoke", progress=False)
              for name in ("cosface-18", "cosface-18@ft1", "cosface-18@ft2")]
    margins = [m.metrics["private_train_margin"] for m in models]
    assert margins[0] < margins[1] < margins[2], margins
    for before, after in zip(models, models[1:]):
        changed = [not torch.equal(v, after.target.state_dict()[k])
                   for k, v in before.target.state_dict().items() if v.is_floating_point()]
        assert sum(changed) > len(changed) // 2


def test_kedmi_checkpoint_imports_and_then_loads_for_that_name(
        world: World, cache: Cache, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = get_entry("ir152").resolve("smoke")
    released = build_target(cfg, world.num_private).eval()
    with torch.no_grad():
        for tensor in released.parameters():
            tensor.add_(0.05 * torch.randn_like(tensor))
    state = {f"module.{k}": v for k, v in released.backbone.state_dict().items()}
    file = tmp_path / "IR152_target.tar"
    torch.save({"state_dict": state}, file)
    path = import_weights(file, "ir152", world, cache, "smoke")
    assert path == user_weights_path(cache, "smoke", "ir152")
    forbid_training(monkeypatch)
    loaded = load_entry(get_entry("ir152"), world, cache, "smoke", progress=False)
    assert loaded.source == "user"
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded.target(x)[0], released(x)[0])
    assert zoo.entry_status(get_entry("ir152"), world, cache, "smoke").state == "user weights"


def test_open_set_import_enrols_the_gallery_and_rekeys_its_fine_tuned_rounds(
        world: World, cache: Cache, tmp_path: Path) -> None:
    cfg = get_entry("cosface-18").resolve("smoke")
    backbone = build_target(cfg, world.num_private).backbone
    file = tmp_path / "backbone.pth"
    torch.save(backbone.state_dict(), file)  # insightface: a bare state dict
    trained_ft1 = zoo.entry_key(get_entry("cosface-18@ft1"), world, cache, "smoke")
    import_weights(file, "cosface", world, cache, "smoke")
    target = load_target("cosface", world, cache, "smoke", progress=False)
    assert isinstance(target, OpenSetModel) and target.gallery.abs().sum() > 0
    assert zoo.entry_key(get_entry("cosface-18"), world, cache, "smoke").startswith("user-")
    assert zoo.entry_key(get_entry("cosface-18@ft1"), world, cache, "smoke") != trained_ft1


def test_import_with_the_wrong_number_of_identities_fails_clearly(
        world: World, cache: Cache, tmp_path: Path) -> None:
    cfg = get_entry("evolve").resolve("smoke")
    file = tmp_path / "evolve.tar"
    torch.save({"state_dict": build_target(cfg, 7).backbone.state_dict()}, file)
    with pytest.raises(TargetError, match="classify 7 identities but world toy has 4") as err:
        import_weights(file, "evolve", world, cache, "smoke")
    assert "\n" not in str(err.value)
    with pytest.raises(Exception, match="has no field 'widht'"):
        import_weights(file, "evolve", world, cache, "smoke", {"widht": 1.0})


def test_evaluation_model_trains_and_loads(world: World, cache: Cache) -> None:
    evaluator = load_evaluator(world, cache, "smoke", progress=False)
    assert evaluator.kind == "closed" and evaluator.num_classes == 4
    assert type(evaluator.backbone).__name__ == "DenseNet"


def test_cli_zoo_train_list_and_errors(world: World, cache: Cache,
                                       capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli_commands, "_world_context", lambda args: (world, cache, "smoke"))
    monkeypatch.setattr(cli_commands, "_world_identity",
                        lambda args: (world.summary(), cache, "smoke"))
    assert cli.main(["zoo", "train", "evolve", "--quiet", "--device", "cpu"]) == 0
    assert "evolve" in capsys.readouterr().out
    assert cli.main(["zoo", "list"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[3:]}
    assert "cached" in lines["evolve"] and "not trained" in lines["ir152"]
    assert "evaluation" in lines["densenet-121"]
    assert cli.main(["zoo", "train", "arcfase"]) == 2
    assert "did you mean arcface" in capsys.readouterr().err


def test_cli_zoo_import_of_a_text_file_is_one_line(world: World, cache: Cache, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli_commands, "_world_context", lambda args: (world, cache, "smoke"))
    notes = tmp_path / "notes.txt"
    notes.write_text("hello, weights come later\n")
    assert cli.main(["zoo", "import", str(notes), "--as", "arcface-18"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mibench: error: ") and err.count("\n") == 1
    assert "notes.txt is not a PyTorch checkpoint (neither a zip archive nor a pickle" in err


def test_device_resolution() -> None:
    assert resolve_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        assert resolve_device("auto").type == "cpu"
        with pytest.raises(TargetError, match="no CUDA device"):
            resolve_device("cuda")


def test_densenet_has_the_torchvision_layout() -> None:
    torchvision = pytest.importorskip("torchvision")
    with torch.device("meta"):
        ours = build_target(get_entry("densenet-121").resolve("paper"), 1000).backbone
        reference = torchvision.models.densenet121()
    assert {k: v.shape for k, v in ours.state_dict().items()} == {
        k: v.shape for k, v in reference.state_dict().items()}
    assert ours.feature_dim == 1024


@pytest.mark.slow
def test_cli_trains_lists_and_imports_in_the_smoke_world(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    common = ["--preset", "smoke", "--cache-dir", str(tmp_path / "cache"), "--quiet"]
    assert cli.main(["zoo", "train", "evolve", *common]) == 0
    assert cli.main(["zoo", "list", *common]) == 0
    out = capsys.readouterr().out
    assert "cached" in out.split("evolve")[-1].splitlines()[0]
    file = next((tmp_path / "cache" / "targets").glob("*/target.pt"))
    assert cli.main(["zoo", "import", str(file), "--as", "evolve", *common]) == 0
    assert cli.main(["zoo", "list", *common]) == 0
    assert "user weights" in capsys.readouterr().out.split("evolve")[-1].splitlines()[0]


@pytest.mark.parametrize("variant", ["ir152+ls", "ir152+mid", "ir152+bido"])
def test_parameter_count_is_counted_per_network_not_per_recipe(variant: str) -> None:
    """Counts are memoised on the network's fields only: a defense that changes the network
    (MID's bottleneck) changes the count, one that changes only training does not."""
    undefended = get_entry("ir152")
    assert parameter_count(undefended, "smoke", 7) == \
        sum(p.numel() for p in build_target(undefended.resolve("smoke"), 7).parameters())
    entry = get_entry(variant)
    built = build_target(entry.resolve("smoke"), 7)
    assert parameter_count(entry, "smoke", 7) == sum(p.numel() for p in built.parameters())
