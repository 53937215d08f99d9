"""Ground-truth attribute leakage (issue 19.5): known answers on a smoke world and toy inputs."""

from __future__ import annotations

import pytest
import torch

from mibench.cache import Cache
from mibench.cli import main
from mibench.datasets.synth import WorldConfig, build_world
from mibench.metrics import EvalContext, PrivateReference, measure
from mibench.metrics.attribute_model import AttributeConfig, N_CONTINUOUS, train_regressor
from mibench.metrics.attribute_reference import AttributeReference, continuous_errors, discrete_hits
from mibench.metrics.bootstrap import interval, to_row
from mibench.registry import METRICS
from mibench.reports.leaderboard import leaderboard_markdown
from mibench.reports.leakage import leakage_rows
from mibench.reports.render import write_report
from mibench.reports.runs import load_run
from mibench.store import CellKey, Store
from mibench.testing import ColourTarget, toy_world
from mibench.world import World

# A smoke world whose public split has enough identities to learn attributes from.
PUBLIC = {"public_identities": 300, "public_per_identity": 2}
RECIPE = AttributeConfig(width=8, epochs=30)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    cache = Cache(tmp_path_factory.mktemp("cache"))
    return build_world(WorldConfig.resolve("smoke", PUBLIC), cache, progress=False)


@pytest.fixture(scope="module")
def reference(world: World) -> PrivateReference:
    regressor, _ = train_regressor(world.split("public"), RECIPE, torch.device("cpu"))
    attributes = AttributeReference(regressor, world.split("private-test"), world.split("public"))
    return PrivateReference(world.split("private-train"), ColourTarget(), attributes=attributes)


def context(reference: PrivateReference, images: torch.Tensor,
            labels: torch.Tensor) -> EvalContext:
    return EvalContext(images, labels, target=ColourTarget(), private=reference)


def test_private_test_images_leak_far_more_than_chance(world, reference):
    test = world.split("private-test")
    err, acc = measure(context(reference, test.float_images(), test.labels),
                       ["attr_err", "attr_acc"])
    # the generated images are the ceiling's own images: the value is the ceiling
    assert err.value == pytest.approx(err.detail["ceiling"], rel=1e-5)
    assert acc.value == pytest.approx(acc.detail["ceiling"], rel=1e-5)
    # at 32 px the most visible attributes leak by far; the mean over all 21 less so
    assert err.value < err.detail["chance"]
    for name in ("skin_tone", "hair_darkness"):
        assert err.detail[f"err:{name}"] < 0.5 * err.detail[f"chance:{name}"]
    assert acc.value > acc.detail["chance"] + 0.15


def test_chance_is_the_error_of_shuffled_identities(world, reference):
    """Averaged over every cyclic shift of the labels, each identity's truth meets every other
    identity's images once: exactly the chance reference."""
    test = world.split("private-test")
    n = test.num_classes
    shifted = [measure(context(reference, test.float_images(), (test.labels + s) % n),
                       ["attr_err", "attr_acc"]) for s in range(1, n)]
    chance = measure(context(reference, test.float_images(), test.labels),
                     ["attr_err", "attr_acc"])
    for j in range(2):
        mean = sum(values[j].value for values in shifted) / (n - 1)
        assert mean == pytest.approx(chance[j].detail["chance"], rel=1e-5)


def test_interval_over_identities_brackets_the_value(world, reference):
    test = world.split("private-test")
    ctx = context(reference, test.float_images(), test.labels)
    value = measure(ctx, ["attr_err"])[0]
    iv = interval(METRICS.get("attr_err"), ctx, value)
    assert iv.low < value.value < iv.high and iv.identities == test.num_classes
    assert iv.detail["chance"] == value.detail["chance"]


def test_references_follow_the_attacked_identities(world, reference):
    """One identity's images: its own ceiling and chance, not the whole world's."""
    test = world.split("private-test")
    mine = test.labels == 3
    err = measure(context(reference, test.float_images(mine), test.labels[mine]),
                  ["attr_err"])[0]
    refs = reference.attributes.references
    assert err.detail["ceiling"] == pytest.approx(refs["err_ceiling"][3].mean().item(), rel=1e-5)
    assert err.detail["chance"] == pytest.approx(refs["err_chance"][3].mean().item(), rel=1e-5)


def test_errors_and_hits_on_known_outputs():
    outputs = torch.zeros(1, N_CONTINUOUS + 11)
    outputs[0, 0] = 0.5                                     # face_width predicted 0.5
    outputs[0, N_CONTINUOUS + 2] = 1.0                      # hairstyle 2 (bob)
    outputs[0, N_CONTINUOUS + 6 + 1] = 1.0                  # beard 1 (stubble)
    outputs[0, N_CONTINUOUS + 9 + 0] = 1.0                  # glasses 0 (no)
    truth = torch.zeros(1, N_CONTINUOUS + 3)
    truth[0, 0], truth[0, N_CONTINUOUS:] = -0.5, torch.tensor([2.0, 0.0, 0.0])
    errors = continuous_errors(outputs, truth, torch.full((N_CONTINUOUS,), 0.5))
    assert errors[0, 0] == pytest.approx(2.0) and errors[0, 1:].abs().sum() == 0
    assert discrete_hits(outputs, truth).tolist() == [[1.0, 0.0, 1.0]]


def test_world_without_attributes_has_no_value_and_says_why(tmp_path):
    world = toy_world()       # like real data: no ground-truth attributes
    assert AttributeReference.of_world(world, Cache(tmp_path), "smoke",
                                       torch.device("cpu")) is None
    private = PrivateReference(world.split("private-train"), ColourTarget())
    images = world.split("private-test").float_images()
    results = measure(context(private, images, world.split("private-test").labels),
                      ["attr_err", "attr_acc"])
    assert all(r.value is None and "no ground-truth identity attributes" in r.reason
               for r in results)


def test_synthetic_world_without_a_regressor_says_why(world):
    private = PrivateReference(world.split("private-train"), ColourTarget())
    test = world.split("private-test")
    err = measure(context(private, test.float_images(), test.labels), ["attr_err"])[0]
    assert err.value is None and "no attribute regressor" in err.reason


def test_list_metrics_shows_the_leakage_metrics(capsys):
    assert main(["list", "metrics"]) == 0
    out = capsys.readouterr().out
    assert "attr_err" in out and "attr_acc" in out


def test_report_and_leaderboard_show_the_leakage_table(world, reference, tmp_path):
    """Two stored cells: "real" shows each identity's own private-test images (the ceiling),
    "shuffled" another identity's (about chance); the table ranks what leaked per attribute."""
    test = world.split("private-test")
    store = Store(tmp_path / "runs")
    store.create_run("r1", {"preset": "smoke", "run": {"identities": 8, "samples": 2}},
                     {}, "cpu", "mibench run --preset smoke")
    shown = {"real": test.labels, "shuffled": (test.labels + 1) % test.num_classes}
    keys = {name: CellKey("r1", name, "arcface-18", "similar", 0) for name in shown}
    store.add_cells(list(keys.values()))
    for name, labels in shown.items():
        ctx = context(reference, test.float_images(), labels)
        values = measure(ctx, ["attr_err", "attr_acc"])
        store.start_cell(keys[name])
        store.finish_cell(keys[name], [("all", v.name, v.value, None) for v in values], {}, {},
                          "", tuple(to_row("all", interval(METRICS.get(v.name), ctx, v))
                                    for v in values))
    run = load_run(store, "r1")
    real, shuffled = leakage_rows(run.cells)
    assert (real.attack, shuffled.attack) == ("real", "shuffled")
    assert real.error.split(" ± ")[0] == real.error_ceiling
    assert real.continuous[0].name in ("skin_tone", "hair_darkness")
    assert float(real.continuous[0].relative) < 0.5 < float(shuffled.continuous[0].relative)
    board = leaderboard_markdown([run])
    assert "## Ground-truth attribute leakage" in board and f"| {real.summary} |" in board
    html = write_report([run], tmp_path / "report", figures=False, progress=False).read_text()
    assert "Attribute leakage" in html and real.continuous[0].name in html
