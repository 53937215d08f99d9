"""The synthetic face world: determinism, splits, ground truth, cache safety, preview, registry."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from fake_faces import fake_identity_tree

from mibench.cache import Cache
from mibench.datasets.preview import save_preview
from mibench.datasets.real.config import RealWorldConfig
from mibench.datasets.real.world import FolderTreeDataset
from mibench.datasets.synth import WorldConfig, build_world
from mibench.datasets.synth import renderer as renderer_module
from mibench.datasets.synth import world as world_module
from mibench.datasets.synth.face import face_params, slice_params
from mibench.datasets.synth.identity import ATTRIBUTE_NAMES, sample_identities
from mibench.datasets.synth.nuisance import sample_nuisances
from mibench.datasets.synth.renderer import render
from mibench.registry import DATASETS
from mibench.runconfig import world_summary
from mibench.world import SPLITS, UNLABELLED, World, WorldSummary

SMOKE = WorldConfig.resolve("smoke")


@pytest.fixture(scope="module")
def smoke_world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return build_world(SMOKE, Cache(tmp_path_factory.mktemp("cache")), progress=False)


def _same_images(a: World, b: World) -> bool:
    return all(torch.equal(a.split(s).images, b.split(s).images) for s in SPLITS)


def test_same_seed_gives_identical_bytes_across_threads_and_chunks(tmp_path: Path,
                                                                    smoke_world: World) -> None:
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = build_world(SMOKE, Cache(tmp_path / "a"), progress=False, chunk_size=3)
        torch.set_num_threads(2)
        two = build_world(SMOKE, Cache(tmp_path / "b"), progress=False, chunk_size=64)
    finally:
        torch.set_num_threads(threads)
    assert one.fingerprint == two.fingerprint == smoke_world.fingerprint
    assert _same_images(one, two) and _same_images(one, smoke_world)


def test_render_does_not_depend_on_intra_op_threads_or_batch_split() -> None:
    generator = torch.Generator().manual_seed(1)
    attributes = sample_identities(24, "wild", generator)
    params = face_params(attributes, sample_nuisances(attributes, "wild", generator))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        whole = render(params, 48, supersample=2)
        torch.set_num_threads(1)
        pieces = torch.cat([render(slice_params(params, s, s + 5), 48, supersample=2)
                            for s in range(0, 24, 5)])
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(whole, pieces)


def test_other_seed_gives_other_world(tmp_path: Path, smoke_world: World) -> None:
    other = build_world(WorldConfig.resolve("smoke", {"seed": 1}), Cache(tmp_path),
                        progress=False)
    assert other.fingerprint != smoke_world.fingerprint
    assert not torch.equal(other.split("private-train").images,
                           smoke_world.split("private-train").images)


@pytest.mark.parametrize("resolution", [32, 64, 112])
def test_render_resolutions(resolution: int) -> None:
    generator = torch.Generator().manual_seed(0)
    attributes = sample_identities(4, "celeba", generator)
    images = render(face_params(attributes, sample_nuisances(attributes, "celeba", generator)),
                    resolution)
    assert images.shape == (4, 3, resolution, resolution) and images.dtype == torch.uint8
    spread = images.flatten(1).float()
    assert bool((spread.max(1).values - spread.min(1).values > 100).all())


def test_splits_sizes_labels_and_disjoint_identities(smoke_world: World) -> None:
    c = SMOKE
    expected = {"private-train": c.private_identities * c.private_train_per_identity,
                "private-test": c.private_identities * c.private_test_per_identity,
                "aux": c.aux_identities * c.aux_per_identity, "aux-hq": c.aux_hq_images,
                "aux-wild": c.aux_wild_identities * c.aux_wild_per_identity,
                "public": c.public_identities * c.public_per_identity}
    assert {name: len(split) for name, split in smoke_world.splits.items()} == expected
    assert smoke_world.num_private == c.private_identities
    assert smoke_world.resolution == c.resolution
    assert bool((smoke_world.split("aux-hq").labels == UNLABELLED).all())
    ids = {name: set(split.identities.tolist()) for name, split in smoke_world.splits.items()}
    assert ids["private-train"] == ids["private-test"]
    groups = [ids["private-train"], ids["aux"], ids["aux-hq"], ids["aux-wild"], ids["public"]]
    for i, a in enumerate(groups):
        for b in groups[i + 1:]:
            assert not a & b


def test_ground_truth_attributes_follow_identities(smoke_world: World) -> None:
    split = smoke_world.split("private-train")
    assert split.attributes is not None
    assert split.attributes.shape == (len(split), len(ATTRIBUTE_NAMES))
    assert split.meta["attribute_names"] == list(ATTRIBUTE_NAMES)
    distance = (split.attributes[:, None] - split.attributes[None, :]).abs().sum(dim=2)
    same = split.identities[:, None] == split.identities[None, :]
    assert float(distance[same].max()) == 0.0
    assert float(distance[~same].min()) > 0.1


def test_nuisances_vary_images_of_one_identity(smoke_world: World) -> None:
    split = smoke_world.split("private-train")
    images = split.float_images()
    for label in range(split.num_classes):
        own = images[split.of_class(label)]
        differences = (own[:, None] - own[None, :]).abs().mean(dim=(2, 3, 4))
        off_diagonal = differences[~torch.eye(len(own), dtype=torch.bool)]
        assert float(off_diagonal.min()) > 0.02
    nuisances = split.meta["nuisances"]
    assert bool((nuisances.std(dim=0)[:6] > 0).all())  # pose and framing vary


def test_images_carry_identity(smoke_world: World) -> None:
    """Faces (centre crop) of one identity are closer to each other than to other identities."""
    split = smoke_world.split("private-train")
    side = split.resolution
    faces = split.float_images()[:, :, side // 4:3 * side // 4, side // 4:3 * side // 4]
    distance = torch.cdist(faces.flatten(1), faces.flatten(1))
    same = split.identities[:, None] == split.identities[None, :]
    off_diagonal = ~torch.eye(len(split), dtype=torch.bool)
    assert float(distance[same & off_diagonal].mean()) < 0.8 * float(distance[~same].mean())


def test_second_build_loads_from_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = Cache(tmp_path)
    first = build_world(SMOKE, cache, progress=False)

    def no_rendering(*args: object, **kwargs: object) -> torch.Tensor:
        raise AssertionError("a cached world was rendered again")

    monkeypatch.setattr(renderer_module, "render", no_rendering)
    second = build_world(SMOKE, cache, progress=False)
    assert second.fingerprint == first.fingerprint and _same_images(first, second)
    assert cache.lookup("world", first.fingerprint) is not None


def test_interrupted_build_is_never_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           smoke_world: World) -> None:
    cache = Cache(tmp_path)
    real_render = renderer_module.render
    calls = {"n": 0}

    def crash_midway(*args: object, **kwargs: object) -> torch.Tensor:
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("interrupted while rendering")
        return real_render(*args, **kwargs)

    monkeypatch.setattr(renderer_module, "render", crash_midway)
    with pytest.raises(KeyboardInterrupt):
        build_world(SMOKE, cache, progress=False, chunk_size=8)
    key = world_module.world_key(SMOKE, cache)
    assert cache.lookup("world", key) is None
    assert not any(p.name.startswith(".tmp-") for p in (tmp_path / "world").iterdir())
    monkeypatch.setattr(renderer_module, "render", real_render)
    rebuilt = build_world(SMOKE, cache, progress=False)
    assert cache.lookup("world", key) is not None and _same_images(rebuilt, smoke_world)


def test_preview_png_is_written(tmp_path: Path, smoke_world: World) -> None:
    path = tmp_path / "preview.png"
    save_preview(smoke_world, path, identities=3, images=4)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    save_preview(smoke_world, tmp_path / "one.png", splits=["aux-hq"])
    assert (tmp_path / "one.png").stat().st_size > 0


def test_registry_lookup_builds_the_world(tmp_path: Path, smoke_world: World) -> None:
    synth = DATASETS.get("synth")
    assert synth.Config is WorldConfig and synth.description
    world = synth.build(synth.Config.resolve("smoke"), Cache(tmp_path), progress=False)
    assert world.fingerprint == smoke_world.fingerprint


def test_presets_scale_sizes() -> None:
    mini, paper = WorldConfig.resolve("mini"), WorldConfig.resolve("paper")
    assert SMOKE.num_images() < mini.num_images() < paper.num_images()
    assert (mini.resolution, paper.resolution, paper.private_identities) == (64, 112, 1000)


def test_summary_from_the_config_is_the_built_worlds_identity(tmp_path: Path,
                                                             smoke_world: World) -> None:
    assert world_module.SynthDataset.summary(SMOKE, Cache(tmp_path)) == smoke_world.summary()
    assert smoke_world.summary().num_private == SMOKE.private_identities
    other = WorldConfig.resolve("smoke", {"seed": 1})
    other_summary = world_module.SynthDataset.summary(other, Cache(tmp_path))
    assert other_summary.fingerprint != smoke_world.fingerprint


def test_real_world_summary_needs_no_decoding(tmp_path: Path) -> None:
    root = fake_identity_tree(tmp_path / "tree", ["a", "b", "c", "d", "e"], 3)
    config = RealWorldConfig.resolve("smoke", {"root": str(root), "private_identities": 2,
                                               "aux_identities": 1})
    cache = Cache(tmp_path / "cache")
    before = FolderTreeDataset.summary(config, cache)
    assert not (tmp_path / "cache").exists()
    world = FolderTreeDataset.build(config, cache, progress=False)
    assert before == world.summary() == FolderTreeDataset.summary(config, cache)
    assert before == WorldSummary("folders", world.fingerprint, 2)


def test_world_summary_builds_a_plugin_world_that_cannot_summarise_itself(
        tmp_path: Path, smoke_world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    class Plugin:
        Config = WorldConfig

        @staticmethod
        def build(config: WorldConfig, cache: Cache, progress: bool = True) -> World:
            return smoke_world

    tree = {"run": {"world": "plugin"}, "world": SMOKE.to_dict()}
    monkeypatch.setattr(DATASETS, "get", lambda name: Plugin)
    assert world_summary(tree, Cache(tmp_path)) == smoke_world.summary()
