"""The command line: help, listings, config resolution and honest 'not built yet' messages."""

from __future__ import annotations

import pytest
import yaml

from mibench import __version__
from mibench.cache import Cache
from mibench.cli import main
from mibench.datasets.synth import world as synth_world
from mibench.datasets.synth.config import WorldConfig
from mibench.targets.zoo import get_entry


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_version_and_help_show_examples(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"mibench {__version__}"
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "examples:" in out and "mibench run --attacks all --targets arcface" in out


def test_list_presets(capsys):
    code, out, _ = run(capsys, "list", "presets")
    assert code == 0
    for name in ("smoke", "mini", "paper"):
        assert name in out


def test_dry_run_prints_the_resolved_config(capsys, tmp_path):
    config = tmp_path / "exp.yaml"
    config.write_text("preset: smoke\nrun:\n  samples: 3\nworld:\n  resolution: 48\n")
    code, out, _ = run(capsys, "run", "--dry-run", "--config", str(config),
                       "--set", "run.seed=7", "--identities", "5")
    assert code == 0
    tree = yaml.safe_load(out)
    assert tree["preset"] == "smoke"
    assert tree["run"]["seed"] == 7 and tree["run"]["samples"] == 3
    assert tree["run"]["identities"] == 5
    assert tree["world"]["resolution"] == 48
    code, out, _ = run(capsys, "run", "--dry-run", "--preset", "mini")
    mini = yaml.safe_load(out)
    assert mini["run"]["identities"] == 10 and mini["run"]["samples"] == 16


@pytest.mark.parametrize("argv,message", [
    (["run", "--dry-run", "--set", "run.samples=0"], "RunConfig.samples: must be >= 1, got 0"),
    (["run", "--dry-run", "--set", "run.sampels=4"], "did you mean 'samples'?"),
    (["run", "--dry-run", "--set", "world.resolution=big"], "resolution: expected an integer"),
    (["run", "--dry-run", "--set", "nope"], "--set expects key=value"),
    (["run", "--dry-run", "--config", "/no/such.yaml"], "config file /no/such.yaml does not exist"),
    (["run", "--dry-run", "--targets", "arcfase"], "unknown target 'arcfase'; did you mean"),
    (["run", "--dry-run", "--attacks", "gmj"], "unknown attack 'gmj'; did you mean gmi"),
])
def test_errors_are_one_line(capsys, argv, message):
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert err.startswith("mibench: error: ") and message in err
    assert err.count("\n") == 1


def test_data_build_and_show(capsys, tmp_path):
    cache = str(tmp_path / "cache")
    code, out, _ = run(capsys, "data", "build", "--preset", "smoke", "--cache-dir", cache,
                       "--quiet")
    assert code == 0
    assert "private-train" in out and "aux-wild" in out and "32px" in out
    png = tmp_path / "world.png"
    code, out, _ = run(capsys, "data", "show", "--preset", "smoke", "--cache-dir", cache,
                       "--out", str(png), "--identities", "3", "--images", "4", "--quiet")
    assert code == 0 and png.stat().st_size > 10_000
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_list_shows_registered_components(capsys):
    code, out, _ = run(capsys, "list")
    assert code == 0
    for expected in ("gmi", "Zhang et al., CVPR (2020)", "whitebox", "synth", "arcface-18",
                     "eval_acc1"):
        assert expected in out


def no_rendering(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("the world was rendered")

    monkeypatch.setattr(synth_world, "build_world", fail)
    monkeypatch.setattr(synth_world, "write_world", fail)


def test_zoo_list_at_paper_does_not_render_the_world(capsys, tmp_path, monkeypatch):
    no_rendering(monkeypatch)
    cache = tmp_path / "cache"
    code, out, _ = run(capsys, "zoo", "list", "--preset", "paper", "--cache-dir", str(cache))
    assert code == 0
    fingerprint = synth_world.world_key(WorldConfig.resolve("paper"), Cache(cache))
    assert out.startswith(f"preset paper, world synth {fingerprint};")
    rows = {line.split()[0]: line for line in out.splitlines()[3:]}
    assert "71.25M" in rows["ir152"] and rows["ir152"].endswith("softmax 20ep lr 0.01 bs 64 w 1")
    assert rows["arcface-18@ft2"].endswith("arcface 5ep lr 0.01 bs 128 w 1")
    assert "not trained" in rows["arcface-50"] and not (cache / "world").exists()


def test_dry_run_at_paper_prints_the_target_recipes(capsys, monkeypatch):
    no_rendering(monkeypatch)
    code, out, _ = run(capsys, "run", "--preset", "paper", "--targets", "ir152,arcface-18@ft1",
                       "--dry-run")
    assert code == 0
    assert set(yaml.safe_load(out)) == {"preset", "run", "world", "attacks"}
    comments = [line[2:] for line in out.splitlines() if line.startswith("# ")]
    assert comments[0].startswith("training recipes at preset paper")
    recipes = yaml.safe_load("\n".join(comments[1:]))
    targets = recipes["target_recipes"]
    assert list(targets) == ["ir152", "arcface-18@ft1"]
    assert targets["ir152"] == {"train": "private-train",
                                **get_entry("ir152").resolve("paper").to_dict()}
    assert targets["arcface-18@ft1"]["fine_tunes"] == "arcface-18"
    assert (targets["arcface-18@ft1"]["epochs"], targets["arcface-18@ft1"]["lr"]) == (5, 0.01)
    evaluator = recipes["eval_model_recipe"]["densenet-121"]
    assert (evaluator["arch"], evaluator["kind"], evaluator["train"]) == (
        "densenet", "closed", "private-train")
    second = recipes["eval2_model_recipe"]["resnet-18"]
    assert (second["arch"], second["depth"], second["seed"]) == ("resnet", 18, 1)


def test_eval2_model_flag_sets_the_second_evaluator(capsys):
    code, out, _ = run(capsys, "run", "--preset", "smoke", "--eval2-model", "none", "--dry-run")
    assert code == 0 and yaml.safe_load(out)["run"]["eval2_model"] == "none"
    code, _, err = run(capsys, "run", "--preset", "smoke", "--eval2-model", "densenet-121",
                       "--dry-run")
    assert code == 2 and "already the first evaluation model" in err
