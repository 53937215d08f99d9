"""Defenses as defended targets (issue 20): known answers of each mechanism, and defended
smoke targets trained and cached apart from the undefended ones."""

from __future__ import annotations

import pytest
import torch

from mibench.cache import Cache
from mibench.errors import ConfigError, UnknownNameError
from mibench.registry import DEFENSES, TARGETS
from mibench.targets.defended import train_transfer
from mibench.targets.defenses import get_defense
from mibench.targets.defenses.bido import hsic, normalised_hsic
from mibench.targets.defenses.mid import gaussian_kl
from mibench.targets.defenses.smoothing import ramped_alpha, smoothed_targets
from mibench.targets.defenses.stages import stage_blocks
from mibench.targets.defenses.tldmi import frozen_modules
from mibench.targets.models import build_target
from mibench.targets.train import build_objective, fit
from mibench.targets.zoo import entry_key, get_entry, load_entry
from mibench.testing import toy_world
from mibench.world import World


@pytest.fixture(scope="module")
def world() -> World:
    return toy_world()


def test_mid_kl_is_zero_for_a_standard_normal_posterior() -> None:
    assert float(gaussian_kl(torch.zeros(8, 16), torch.ones(8, 16))) == 0.0
    assert float(gaussian_kl(torch.ones(8, 16), torch.ones(8, 16))) == pytest.approx(
        0.5 * 16 / torch.log(torch.tensor(2.0)).item())


def test_bido_hsic_is_near_zero_for_independent_and_positive_for_identical() -> None:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(256, 4, generator=g), torch.randn(256, 4, generator=g)
    assert float(normalised_hsic(x, x)) == pytest.approx(1.0, abs=1e-5)
    assert float(normalised_hsic(x, y)) < 0.05
    assert float(hsic(x, x)) > 20 * float(hsic(x, y)) > 0.0


def test_negls_targets_sum_to_one_with_negative_off_target_mass() -> None:
    soft = smoothed_targets(torch.tensor([0, 2]), 4, -0.05)
    assert torch.allclose(soft.sum(1), torch.ones(2))
    assert float(soft[0, 1]) == pytest.approx(-0.05 / 4)
    assert float(soft[0, 0]) == pytest.approx(1.05 - 0.05 / 4)


def test_smoothing_warm_up_is_zero_for_the_first_half_then_a_linear_ramp() -> None:
    assert ramped_alpha(-0.05, 0.4, 0.5) == 0.0
    assert ramped_alpha(-0.05, 0.75, 0.5) == pytest.approx(-0.025)
    assert ramped_alpha(-0.05, 1.0, 0.5) == pytest.approx(-0.05)


def test_rolss_model_has_no_skip_in_the_last_stage() -> None:
    for base in ("ir152", "arcface-18"):
        target = build_target(get_entry(f"{base}+rolss").resolve("smoke"), 4)
        stages = stage_blocks(target.backbone)
        assert all(not block.skip for block in stages[-1])
        assert all(block.skip for stage in stages[:-1] for block in stage)
        block = stages[-1][-1].eval()
        x = torch.randn(2, block.bn1.num_features if hasattr(block, "bn1") else
                        block.res_layer[0].num_features, 2, 2)
        body = block.res_layer(x) if hasattr(block, "res_layer") else None
        if body is not None:
            assert torch.equal(block(x), body)


def test_tldmi_frozen_layers_do_not_change_during_fine_tuning(world: World) -> None:
    cfg = get_entry("ir152+tldmi").resolve("smoke")
    target, metrics = train_transfer(cfg, public=world.split("public"),
                                     private_train=world.split("private-train"),
                                     private_test=world.split("private-test"), progress=False)
    frozen = frozen_modules(target.backbone, cfg.defense_config["freeze"])
    assert all(not p.requires_grad for m in frozen for p in m.parameters())
    # fine-tune once more: frozen weights and BatchNorm statistics stay put
    def state() -> list[torch.Tensor]:
        return [t.clone() for m in frozen for k, t in m.state_dict().items()
                if not k.endswith("num_batches_tracked")]

    before = state()
    fit(target, build_objective(cfg, 4), world.split("private-train"), cfg, progress=False)
    after = state()
    assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))
    assert metrics.val_accuracy is not None


def test_defended_names_patterns_and_overrides() -> None:
    assert "ir152+negls" in TARGETS.expand("ir152+*")
    assert "ir152+mid" not in TARGETS.expand("ir152*") and "ir152+mid" not in TARGETS.names()
    assert TARGETS.get("arcface+mid").name == "arcface-18+mid"
    entry = get_entry("ir152+mid", {"mid": {"beta": 0.01}})
    assert entry.resolve("smoke").defense_config["beta"] == 0.01
    assert get_entry("ir152+mid:beta=0.02", {"mid": {"beta": 0.01}}).resolve(
        "smoke").defense_config["beta"] == 0.02
    assert get_entry("ir152+bido").resolve("smoke").defense_config == {
        "lambda_x": 0.05, "lambda_y": 0.5, "sigma": 5.0}
    with pytest.raises(UnknownNameError):
        TARGETS.get("ir152+nodefense")
    with pytest.raises(ConfigError):
        get_defense("mid", {"betta": 1.0})
    assert set(DEFENSES.names()) == {"bido", "ls", "mid", "negls", "rolss", "tldmi", "trapmid"}


@pytest.mark.parametrize("defense", ["mid", "bido", "negls", "trapmid"])
def test_a_defended_smoke_target_trains_and_is_cached_apart(world: World, tmp_path,
                                                            defense: str) -> None:
    cache = Cache(tmp_path / "cache")
    plain, defended = get_entry("ir152"), get_entry(f"ir152+{defense}")
    assert entry_key(plain, world, cache, "smoke") != entry_key(defended, world, cache, "smoke")
    model = load_entry(defended, world, cache, "smoke", progress=False)
    assert model.source == "trained" and model.config.defense == defense
    again = load_entry(defended, world, cache, "smoke", progress=False)
    assert again.source == "cache"
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(model.target(x)[0], again.target(x)[0])


def test_defense_experiments_plan_every_defense_and_restrict_to_one() -> None:
    from mibench.experiments import get_experiment, plan_cells

    plan = get_experiment("defenses")
    assert {"ir152", "arcface-18", "ir152+mid", "arcface-18+trapmid"} <= set(plan.targets)
    assert "gmi+lomma" in plan.attacks and "kedmi" in plan.attacks
    sweep = plan_cells({"experiment": "defense-sweep", "defense": "mid"})
    assert {c.target for c in sweep} == {"ir152", "ir152+mid:beta=0.003", "ir152+mid:beta=0.01",
                                         "ir152+mid:beta=0.03"}


def test_tradeoff_plot_only_for_runs_with_defended_targets() -> None:
    from types import SimpleNamespace

    from mibench.reports.defense_plot import defense_of, tradeoff_points, tradeoff_uri
    from mibench.store import Subset

    def cell(target: str, natural: float, success: float) -> SimpleNamespace:
        values = {"natural_acc": SimpleNamespace(value=natural),
                  "eval_acc1": SimpleNamespace(value=success)}
        return SimpleNamespace(attack="gmi", target=target, done=True, timings={},
                               measurement=lambda subset, name: values.get(name)
                               if subset == Subset.ALL else None)

    plain = [cell("ir152", 0.9, 0.6)]
    assert tradeoff_uri(plain) is None
    cells = [*plain, cell("ir152+mid:beta=0.01", 0.85, 0.3)]
    assert [p[2:] for p in tradeoff_points(cells)] == [(0.9, 0.6), (0.85, 0.3)]
    assert defense_of("ir152+mid:beta=0.01") == "mid" and defense_of("ir152") == "none"
    assert tradeoff_uri(cells).startswith("data:image/png;base64,")


def test_cli_lists_defenses_and_the_run_config_carries_their_overrides(capsys) -> None:
    from mibench.cli import main
    from mibench.runconfig import resolve

    assert main(["list", "defenses"]) == 0
    assert "negls" in capsys.readouterr().out
    tree = resolve("smoke", assignments=["defenses.mid.beta=0.01", "defense=mid"],
                   flags={"experiment": "defense-sweep"}, with_attacks=False)
    assert tree["defenses"] == {"mid": {"beta": 0.01}} and tree["run"]["defense"] == "mid"
    assert tree["run"]["targets"].split(",")[0] == "ir152"
    with pytest.raises(ConfigError):
        resolve("smoke", assignments=["defenses.mid.betta=0.01"], with_attacks=False)


@pytest.mark.slow
def test_a_run_with_a_defended_target_reports_the_table_and_the_tradeoff(tmp_path,
                                                                          smoke_cache) -> None:
    from mibench.cli import main
    from mibench.store import Store

    runs = tmp_path / "runs"
    assert main(["run", "--attacks", "gmi", "--targets", "ir152,ir152+negls", "--preset",
                 "smoke", "--identities", "1", "--cache-dir", smoke_cache, "--results-dir",
                 str(runs), "--quiet"]) == 0
    store = Store(runs)
    [run_id] = store.run_ids()
    assert all(c["status"] == "done" for c in store.cells(run_id))
    assert main(["report", "--results-dir", str(runs), "--out", str(tmp_path / "out"),
                 "--no-figures", "--quiet"]) == 0
    html = (tmp_path / "out" / "index.html").read_text()
    assert "Accuracy–privacy trade-off" in html and "ir152+negls" in html


def test_sweep_findings_read_the_swept_rows() -> None:
    from mibench.experiments import get_experiment
    from mibench.plans import ExperimentTable, Stat

    sweep = get_experiment("defense-sweep")
    rows = ["ir152", *(f"ir152+mid:beta={b}" for b in (0.003, 0.01, 0.03))]
    success = dict(zip(rows, (0.8, 0.6, 0.5, 0.3)))
    table = ExperimentTable(rows, ["gmi"], ("eval_acc1",),
                            {(r, "gmi"): {"eval_acc1": Stat(v, None, 1)}
                             for r, v in success.items()})
    mid, tldmi = sweep.verdicts(table)
    assert mid.holds is True and "0.6 → 0.5 → 0.3" in mid.detail
    assert tldmi.holds is None
