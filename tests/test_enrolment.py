"""Issue 18.5: the open-set enrolment protocol (``run.enrolment``): ``single`` enrols one seeded
private-train image per identity, ``mean`` keeps the zoo's mean gallery; FGMIA's open-set
condition is the enrolled template; the report names the protocol."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mibench.attacks.fgmia import FGMIA, FGMIAConfig
from mibench.cell import attack_setting
from mibench.registry import ATTACKS
from mibench.reports.render import protocol_rows
from mibench.reports.runs import CellRecord, RunRecord
from mibench.reports.tables import cell_label
from mibench.runconfig import RunConfig
from mibench.targets.enrolment import enrol, run_enrolment, single_image_rows
from mibench.targets.errors import TargetError
from mibench.targets.zoo import get_entry, load_entry
from mibench.testing import ColourTarget, colour_aux, colour_images, toy_context, toy_split
from mibench.world import Split, World

from test_fgmia import ColourGallery   # the loaded (``mean``) gallery: red, green, blue


def private_train(per_identity: int = 5) -> Split:
    """Three identities of random colours, ``per_identity`` images each, interleaved."""
    n = 3 * per_identity
    images = colour_images(n, seed=4)
    labels = torch.arange(n) % 3
    return Split("private-train", images, labels, labels)


def test_single_picks_one_seeded_image_of_each_identity():
    labels = torch.tensor([2, 0, 1, 0, 2, 1, 0, 2])
    rows = single_image_rows(labels, 3, seed=7)
    gen = torch.Generator().manual_seed(7)
    expected = [torch.nonzero(labels == k).flatten()[int(torch.randint(n, (1,), generator=gen))]
                for k, n in enumerate((3, 2, 3))]
    assert rows.tolist() == [int(r) for r in expected]
    assert labels[rows].tolist() == [0, 1, 2]
    assert torch.equal(single_image_rows(labels, 3, seed=7), rows)       # deterministic
    assert {tuple(single_image_rows(labels, 3, seed=s).tolist()) for s in range(8)} != {
        tuple(rows.tolist())}                                             # the seed chooses
    with pytest.raises(TargetError, match="class 3 has no private-train image"):
        single_image_rows(labels, 4, seed=0)


def test_with_single_enrolment_fgmias_condition_is_one_private_train_embedding(cache):
    split = private_train()
    target = ColourGallery()
    enrol(target, split, "single", seed=3)
    ctx = toy_context(cache=cache, target=target, aux=colour_aux(48, power=3),
                      fingerprint="enrolment", aux_fingerprint="colours")
    attack = FGMIA(FGMIAConfig.resolve("smoke", {"resolution": 16}))
    attack.prepare(ctx)
    conditions = attack.identity_conditions(ctx.target, torch.arange(3))
    embeddings = F.normalize(target.embed(split.float_images()), dim=1)
    for k in range(3):
        own = embeddings[split.labels == k]
        assert ((own - conditions[k]).abs().max(dim=1).values < 1e-6).sum() == 1
        mean = F.normalize(F.normalize(own, dim=1).mean(0), dim=0)
        assert not torch.allclose(conditions[k], mean, atol=1e-3)         # not the centroid
    rows = single_image_rows(split.labels, 3, seed=3)
    assert torch.allclose(conditions, embeddings[rows], atol=1e-6)


def test_mean_keeps_the_loaded_gallery_and_closed_set_targets_are_untouched():
    target, split = ColourGallery(), private_train()
    loaded = target.gallery.clone()
    enrol(target, split, "mean", seed=0)
    assert torch.equal(target.gallery, loaded)
    closed = ColourTarget()
    before = {k: v.clone() for k, v in closed.state_dict().items()}
    enrol(closed, split, "single", seed=0)
    assert all(torch.equal(v, before[k]) for k, v in closed.state_dict().items())
    with pytest.raises(TargetError, match="unknown enrolment 'median'"):
        enrol(target, split, "median", seed=0)


def test_the_run_defaults_to_single_and_old_runs_read_as_mean():
    assert RunConfig.resolve("mini").enrolment == "single"
    assert run_enrolment({"enrolment": "single"}) == "single"
    assert run_enrolment({}) == "mean"            # stored before the option: the mean gallery


def _run(enrolment: str, run_id: str) -> RunRecord:
    cell = CellRecord(run_id, "fgmia", "arcface-18", "similar", 0, "done", None, {}, {}, None,
                      enrolment=enrolment)
    return RunRecord(run_id, 0.0, {"run": {"enrolment": enrolment}}, {}, "cpu", "", [cell])


def test_the_report_names_the_enrolment_and_keeps_the_protocols_apart():
    single, mean = _run("single", "a"), _run("mean", "b")
    assert dict(protocol_rows(single))["open-set enrolment"].startswith("single: one ")
    assert dict(protocol_rows(mean))["open-set enrolment"].startswith("mean: ")
    cells = single.cells + mean.cells
    assert [cell_label(c, cells) for c in cells] == ["fgmia · enrolment single",
                                                     "fgmia · enrolment mean"]
    assert cell_label(single.cells[0], single.cells) == "fgmia"


def test_a_cells_open_set_target_is_enrolled_under_the_run_protocol(cache):
    """``attack_setting``: ``single`` re-enrols the zoo's (mean) gallery with the run seed's
    images and keys a target-dependent prior apart; ``mean`` keeps the cached gallery."""
    splits = [toy_split(4, 6, seed=0, noise=0.3, name="private-train"),
              toy_split(4, 2, seed=1, noise=0.3, name="private-test"),
              toy_split(6, 4, seed=2, identity_offset=100, noise=0.3, name="public"),
              toy_split(6, 2, seed=3, identity_offset=100, noise=0.3, name="aux")]
    world = World(name="toy", fingerprint="toy-enrol", splits={s.name: s for s in splits})
    attack = ATTACKS.get("fgmia")(FGMIAConfig.resolve("smoke"))
    setting = {"world": world, "cache": cache, "preset": "smoke",
               "device": torch.device("cpu"), "show_progress": False}
    mean, mean_ctx = attack_setting(attack, "arcface", **setting, enrolment="mean")
    single, ctx = attack_setting(attack, "arcface", **setting, seed=5, enrolment="single",
                                 enrolment_seed=2)
    cached = load_entry(get_entry("arcface"), world, cache, "smoke", progress=False).target
    assert torch.equal(mean.gallery, cached.gallery)
    train = world.split("private-train")
    rows = single_image_rows(train.labels, 4, seed=2)
    with torch.no_grad():
        expected = F.normalize(single.embed(single.preprocess(train.float_images(rows))), dim=1)
    assert torch.allclose(single.gallery, expected, atol=1e-6)
    assert torch.allclose(ctx.target.gallery, expected, atol=1e-6)
    assert ctx.data_fingerprint == mean_ctx.data_fingerprint + ":enrol-single-2"
