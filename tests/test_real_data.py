"""Real-data adapters on small fake CelebA / FFHQ / VGGFace2 trees (tests/fake_faces.py):
splits, numeric sorting, crops, unreadable images, caching, and the one-line errors for broken
trees."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pytest
import torch
from fake_faces import (fake_celeba, fake_ffhq, fake_identity_tree, face_image,
                        identity_colour)

from mibench import cli
from mibench.cache import Cache
from mibench.datasets.real.config import RealWorldConfig
from mibench.datasets.real.errors import DataError
from mibench.datasets.real.folders import identity_folders
from mibench.datasets.real.images import CELEBA_CROP, FFHQ_CROP, SQUARE_CROP, natural_key
from mibench.datasets.real.prepare import describe, prepare
from mibench.datasets.real.world import (CelebADataset, FolderTreeDataset, RealWorld,
                                         plan_celeba)
from mibench.errors import ConfigError
from mibench.registry import DATASETS
from mibench.runconfig import resolve

# identity → image count: ranks by count (ties by id) are 5, 10, 1, 6, 11, 2, 7, 12, 3, ...
COUNTS = {i: 12 - i % 5 for i in range(1, 15)}
MINI1 = [5, 1, 11, 7]   # even ranks of the top 8 (smoke: 4 private identities) → aux
MINI2 = [10, 6, 2, 12]  # odd ranks → private, classes in rank order


@pytest.fixture(scope="module")
def trees(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("data")
    return {"celeba": fake_celeba(root / "celeba", COUNTS),
            "ffhq": fake_ffhq(root / "ffhq", 20),
            "vggface2": fake_identity_tree(root / "vggface2",
                                           ["n000001", "n000010", "n000002", "n000011"], 3),
            "numbers": fake_identity_tree(root / "numbers", ["10", "2", "1", "11", "3", "20"], 4)}


def smoke(**values: object) -> RealWorldConfig:
    return RealWorldConfig.resolve("smoke", values)


def celeba_world(trees: dict[str, Path], tmp_path: Path, **values: object) -> RealWorld:
    config = smoke(root=str(trees["celeba"]), **values)
    world = CelebADataset.build(config, Cache(tmp_path / "cache"), progress=False)
    assert isinstance(world, RealWorld)
    return world


def test_natural_order_sorts_numbers_numerically(trees: dict[str, Path]) -> None:
    assert sorted(["10", "2", "1", "n10", "n2"], key=natural_key) == ["1", "2", "10", "n2", "n10"]
    assert list(identity_folders(trees["numbers"])) == ["1", "2", "3", "10", "11", "20"]


def test_celeba_fgmia_split(trees: dict[str, Path], tmp_path: Path) -> None:
    world = celeba_world(trees, tmp_path)
    train, test = world.split("private-train"), world.split("private-test")
    assert world.num_private == 4 and world.resolution == 32
    assert list(dict.fromkeys(train.identities.tolist())) == MINI2
    assert train.labels.unique().tolist() == [0, 1, 2, 3]
    for label, identity in enumerate(MINI2):
        assert set(train.identities[train.labels == label].tolist()) == {identity}
        assert set(test.identities[test.labels == label].tolist()) == {identity}
    assert list(dict.fromkeys(world.aux().identities.tolist())) == MINI1
    public = set(world.split("public").identities.tolist())
    assert public and public.isdisjoint(MINI1 + MINI2) and len(public) <= 8
    per_identity = torch.bincount(train.labels) + torch.bincount(test.labels)
    assert per_identity.tolist() == [6, 6, 6, 6]  # smoke: max_per_identity 6
    assert len(test) == 4  # 10 % of 6, at least one each


def test_crop_boxes_follow_the_conventions() -> None:
    assert CELEBA_CROP.box(178, 218) == (35, 55, 143, 163)  # 108×108 centre of 178×218
    assert CELEBA_CROP.box(356, 436) == (70, 110, 286, 326)  # the same region, twice the size
    assert FFHQ_CROP.box(128, 128) == (20, 20, 108, 108)  # 88 of 128
    assert SQUARE_CROP.box(90, 120) == (0, 15, 90, 105)


def test_celeba_images_are_the_face_box_only(trees: dict[str, Path], tmp_path: Path) -> None:
    train = celeba_world(trees, tmp_path).split("private-train")
    image = train.images[0].float()
    colour = torch.tensor(identity_colour(MINI2[0]), dtype=torch.float32)
    # the fake face fills exactly the 108×108 centre box: no grey border survives the crop
    for y, x in ((0, 0), (0, 31), (31, 0), (31, 31), (16, 16)):
        assert (image[:, y, x] - colour).abs().max() < 20


def test_ffhq_and_vggface2_as_aux_splits(trees: dict[str, Path], tmp_path: Path) -> None:
    world = celeba_world(trees, tmp_path, aux_hq_root=str(trees["ffhq"]),
                         aux_wild_root=str(trees["vggface2"]))
    hq, wild = world.aux("hq"), world.aux("wild")
    assert len(hq) == 16 and bool((hq.labels == -1).all())  # smoke: 16 FFHQ images
    assert hq.identities.unique().numel() == 16
    colour = torch.tensor(identity_colour(5000), dtype=torch.float32)
    assert (hq.images[0, :, 0, 0].float() - colour).abs().max() < 25  # 88/128 centre crop
    assert wild.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert set(wild.identities.tolist()).isdisjoint(set(hq.identities.tolist()))


def test_missing_aux_split_names_the_option(trees: dict[str, Path], tmp_path: Path) -> None:
    world = celeba_world(trees, tmp_path)
    with pytest.raises(DataError, match=r"no aux-hq split: .*world.aux_hq_root=PATH"):
        world.aux("hq")
    with pytest.raises(DataError, match=r"no aux-wild split: .*world.aux_wild_root=PATH"):
        world.split("aux-wild")


def test_folder_tree_world_in_numeric_order(trees: dict[str, Path], tmp_path: Path) -> None:
    config = smoke(root=str(trees["numbers"]), private_identities=2, aux_identities=2)
    world = FolderTreeDataset.build(config, Cache(tmp_path), progress=False)
    assert DATASETS.get("vggface2") is FolderTreeDataset
    # folders 1, 2 private; 3, 10 aux; 11, 20 public (global ids = natural-order index)
    assert world.split("private-train").identities.unique().tolist() == [0, 1]
    assert world.aux().identities.unique().tolist() == [2, 3]
    assert world.split("public").identities.unique().tolist() == [4, 5]
    colour = torch.tensor(identity_colour(7002), dtype=torch.float32)  # folder "1" is index 2
    image = world.split("private-train").images[0].float()
    assert (image[:, 0, 0] - colour).abs().max() < 25  # centre square of a 90×120 image


def test_unreadable_images_are_listed_and_skipped(trees: dict[str, Path],
                                                  tmp_path: Path) -> None:
    root = fake_celeba(tmp_path / "celeba", COUNTS)
    broken = root / "img_align_celeba" / "000001.jpg"  # identity 1: aux (Mini1)
    broken.write_bytes(b"not a jpeg")
    truncated = root / "img_align_celeba" / "000012.jpg"  # identity 2: private
    truncated.write_bytes(truncated.read_bytes()[:300])
    world = CelebADataset.build(smoke(root=str(root)), Cache(tmp_path / "cache"),
                                progress=False)
    assert world.aux().meta["unreadable"] == [str(broken)]
    assert world.split("private-train").meta["unreadable"] == [str(truncated)]
    assert len(world.aux()) == 23
    report = prepare("celeba", smoke(root=str(root)), progress=False)
    assert sorted(report.unreadable) == sorted([str(broken), str(truncated)])
    assert any("2 unreadable image(s)" in line for line in describe(report))


def test_world_is_cached_and_a_changed_folder_is_a_new_world(tmp_path: Path) -> None:
    root = fake_celeba(tmp_path / "celeba", COUNTS)
    cache = Cache(tmp_path / "cache")
    first = CelebADataset.build(smoke(root=str(root)), cache, progress=False)
    again = CelebADataset.build(smoke(root=str(root)), cache, progress=False)
    assert again.fingerprint == first.fingerprint and again.meta["path"] == first.meta["path"]
    face_image(99, 0, (178, 218), (35, 55, 143, 163)).save(
        root / "img_align_celeba" / "000002.jpg")
    fast = CelebADataset.build(smoke(root=str(root)), cache, progress=False)
    assert fast.fingerprint == first.fingerprint   # rewritten in place: the listing looks fresh
    changed = CelebADataset.build(smoke(root=str(root), verify_listing=True), cache,
                                  progress=False)
    assert changed.fingerprint != first.fingerprint
    after = CelebADataset.build(smoke(root=str(root)), cache, progress=False)
    assert after.fingerprint == changed.fingerprint  # the verified listing is the cached one


def count_image_stats(monkeypatch: pytest.MonkeyPatch, folder: Path) -> list[str]:
    """The paths under ``folder`` that ``os.stat`` (hence ``Path.stat``) is called on."""
    calls: list[str] = []
    real_stat = os.stat

    def counting_stat(path: Any, *args: Any, **kwargs: Any) -> os.stat_result:
        if str(path).startswith(f"{folder}{os.sep}"):
            calls.append(str(path))
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", counting_stat)
    return calls


def test_a_fresh_cached_listing_stats_no_image(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               caplog: pytest.LogCaptureFixture) -> None:
    root = fake_celeba(tmp_path / "celeba", COUNTS)
    cache = Cache(tmp_path / "cache")
    images = root / "img_align_celeba"
    calls = count_image_stats(monkeypatch, images)
    with caplog.at_level(logging.INFO, logger="mibench.datasets.real"):
        first = CelebADataset.build(smoke(root=str(root)), cache, progress=False)
        assert len(calls) >= 24 and "file by file" in caplog.text   # the first check: every file
        calls.clear()
        caplog.clear()
        again = CelebADataset.build(smoke(root=str(root)), cache, progress=False)
        assert calls == [] and "world listing fresh: 1 folder(s) checked in" in caplog.text
        assert again.fingerprint == first.fingerprint
        CelebADataset.build(smoke(root=str(root), verify_listing=True), cache, progress=False)
        assert len(calls) >= 24


def test_an_added_or_removed_file_is_seen_without_verify(tmp_path: Path) -> None:
    root = fake_identity_tree(tmp_path / "tree", ["1", "2", "3", "4", "5", "6", "7", "8", "9"], 3)
    cache = Cache(tmp_path / "cache")
    first = FolderTreeDataset.build(smoke(root=str(root)), cache, progress=False)
    folder = root / "1"
    added = folder / "zz-added.jpg"
    added.write_bytes(next(folder.iterdir()).read_bytes())
    grown = FolderTreeDataset.build(smoke(root=str(root)), cache, progress=False)
    assert grown.fingerprint != first.fingerprint
    added.unlink()
    next(p for p in sorted((root / "9").iterdir())).unlink()
    shrunk = FolderTreeDataset.build(smoke(root=str(root)), cache, progress=False)
    assert shrunk.fingerprint not in (first.fingerprint, grown.fingerprint)
    celeba = fake_celeba(tmp_path / "celeba", COUNTS)
    before = CelebADataset.build(smoke(root=str(celeba)), cache, progress=False)
    plan_celeba(smoke(root=str(celeba)))[0].paths[0].unlink()  # still in the identity file
    after = CelebADataset.build(smoke(root=str(celeba)), cache, progress=False)
    assert after.fingerprint != before.fingerprint


def test_verify_listing_is_not_part_of_the_world_key() -> None:
    plain, verified = smoke(root="/data"), smoke(root="/data", verify_listing=True)
    assert plain.identity() == verified.identity()
    assert plain.identity() == {k: v for k, v in plain.to_dict().items() if k != "verify_listing"}


def test_gmi_split_lists(trees: dict[str, Path], tmp_path: Path) -> None:
    lists = tmp_path / "lists"
    lists.mkdir()
    names = sorted(p.name for p in (trees["celeba"] / "img_align_celeba").iterdir())
    (lists / "celeba_trainset.txt").write_text(f"{names[0]} 1\n{names[1]} 1\n{names[20]} 0\n")
    (lists / "celeba_testset.txt").write_text(f"{names[2]} 1\n{names[19]} 0\n")
    (lists / "celeba_ganset.txt").write_text("\n".join(names[40:60]) + "\n")
    world = celeba_world(trees, tmp_path, split="gmi", split_dir=str(lists))
    train = world.split("private-train")
    assert train.labels.tolist() == [0, 1, 1] and train.identities.tolist() == [2, 1, 1]
    assert world.split("private-test").labels.tolist() == [0, 1]
    assert len(world.aux()) > 0 and world.aux().identities.tolist() == \
        world.split("public").identities.tolist()[:len(world.aux())]


def test_broken_trees_are_one_line_errors(trees: dict[str, Path], tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match=r"missing img_align_celeba/ and identity_CelebA.txt"):
        prepare("celeba", smoke(root=str(empty)), progress=False)
    (empty / "img_align_celeba").mkdir()
    (empty / "identity_CelebA.txt").write_text("000001.jpg 1\n")
    with pytest.raises(DataError, match="folder is empty"):
        prepare("celeba", smoke(root=str(empty)), progress=False)
    (empty / "img_align_celeba" / "x.jpg").write_bytes(b"")
    (empty / "identity_CelebA.txt").write_text("000001.jpg one\n")
    with pytest.raises(DataError, match=r"identity_CelebA.txt:1: expected '<file> <identity>'"):
        prepare("celeba", smoke(root=str(empty)), progress=False)
    (empty / "identity_CelebA.txt").write_text("000001.jpg 1\n")
    with pytest.raises(DataError, match="none of the 1 images"):
        prepare("celeba", smoke(root=str(empty)), progress=False)
    loose = tmp_path / "loose"
    loose.mkdir()
    face_image(1, 0, (50, 50), (0, 0, 50, 50)).save(loose / "a.jpg")
    with pytest.raises(DataError, match="loose images"):
        prepare("folders", smoke(root=str(loose)), progress=False)
    (tmp_path / "ffhq").mkdir()
    with pytest.raises(DataError, match="holds no images"):
        prepare("ffhq", smoke(root=str(tmp_path / "ffhq")), progress=False)
    with pytest.raises(DataError, match="does not exist"):
        prepare("vggface2", smoke(root=str(tmp_path / "nowhere")), progress=False)
    with pytest.raises(ConfigError, match="needs its folder: pass --root"):
        RealWorldConfig.resolve("smoke")
    with pytest.raises(ConfigError, match="--root is for real-data worlds"):
        resolve("smoke", world_flags={"root": str(empty)})


def test_data_prepare_command(trees: dict[str, Path], capsys: pytest.CaptureFixture[str],
                              tmp_path: Path) -> None:
    assert cli.main(["data", "prepare", "celeba", "--root", str(trees["celeba"]), "--preset",
                     "smoke", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "celeba at" in out and "private-train       20 images       4 identities" in out
    assert cli.main(["data", "prepare", "celeba", "--root", str(tmp_path / "no")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "is not a folder; pass --root" in err


def test_aligned_world_falls_back_to_the_crop_without_a_face(trees: dict[str, Path],
                                                             tmp_path: Path) -> None:
    pytest.importorskip("dlib", reason="alignment needs dlib-bin")
    world = celeba_world(trees, tmp_path, align=True, public_identities=1)
    plain = celeba_world(trees, tmp_path / "plain", public_identities=1)
    assert torch.equal(world.split("private-train").images, plain.split("private-train").images)


@pytest.mark.parametrize("flags, message", [
    (["--aux", "hq"], "no aux-hq split: give an FFHQ folder with --set world.aux_hq_root=PATH"),
    (["--eval-model", "nope"], "unknown evaluation model 'nope'; choose one of"),
])
def test_run_fails_at_once_with_one_line(trees: dict[str, Path], tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str],
                                         flags: list[str], message: str) -> None:
    code = cli.main(["run", "--world", "celeba", "--root", str(trees["celeba"]), "--preset",
                     "smoke", "--attacks", "gmi", "--results-dir", str(tmp_path / "runs"),
                     "--quiet", *flags])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and err.count("\n") == 0


def test_paper_preset_takes_the_papers_aux_sizes_not_whole_datasets() -> None:
    """At ``paper`` the shifted aux splits are the paper's sizes (VGGFace2-Mini: 1,000
    identities; FFHQ: 30,000 images, our count) — not all of VGGFace2's 3.1 M images."""
    paper = RealWorldConfig.resolve("paper", {"root": "/data/celeba"})
    assert paper.aux_wild_identities == 1000
    assert paper.aux_hq_images == 30000
    assert RealWorldConfig.resolve("paper", {"root": "/d", "aux_wild_identities": 0}
                                   ).aux_wild_identities == 0  # 0 still means "all"
