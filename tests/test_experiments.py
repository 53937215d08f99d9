"""Paper experiments as named plans: their cells, seeds, the paper-table layout with mean ± std,
the findings' verdicts, and one plan run end to end at smoke size."""

from __future__ import annotations

import pytest

from mibench.cli import main
from mibench.experiments import (AT_SCALE, EXPERIMENTS, MAIN_ATTACKS, check_plan_names,
                                 get_experiment, plan_cells, seeds)
from mibench.errors import ConfigError, UnknownNameError
from mibench.reports.experiment import (experiment_markdown, experiment_view,
                                        experiment_views)
from mibench.reports.leaderboard import leaderboard_markdown, run_facts
from mibench.reports.runs import CellRecord, load_run
from mibench.runconfig import resolve
from mibench.store import CellKey, Store


def stored_run(store: Store, run_id: str, experiment: str,
               values: dict[tuple[str, str, str, int], float], **run_fields: object) -> None:
    """A stored experiment run whose cells have the given eval_acc1 (and fixed timings)."""
    store.create_run(run_id, {"preset": "smoke", "run": {"experiment": experiment, **run_fields}},
                     {"commit": "abc1234", "machine": "test box"}, "cpu", "mibench run")
    keys = [CellKey(run_id, *cell) for cell in values]
    store.add_cells(keys)
    for key, value in zip(keys, values.values()):
        store.start_cell(key)
        store.finish_cell(key, [("all", "eval_acc1", value, None)],
                          {"prepare_s": 1.0, "attack_s_per_identity": value},
                          {"per_identity": {"forward": 16, "gradient": 0}}, "")


def test_every_plan_names_registered_components_and_the_paper_grid():
    for experiment in EXPERIMENTS.values():
        check_plan_names(experiment)
    table1 = get_experiment("table1")
    assert set(table1.attacks) == set(MAIN_ATTACKS) and len(table1.cells()) == 8 * 5
    assert {c.aux for c in get_experiment("table5").cells()} == {"similar", "hq", "wild"}
    assert len(get_experiment("table3").targets) == 10          # 2 families × (base + 4 rounds)
    assert len(get_experiment("table4").cells()) == 4 * 3
    with pytest.raises(UnknownNameError, match="unknown experiment 'tabel1'.*table1"):
        get_experiment("tabel1")


def test_an_experiment_fixes_the_grid_and_seeds_multiply_it():
    tree = resolve("smoke", flags={"experiment": "table5", "seeds": 3, "seed": 4})
    assert tree["run"]["attacks"] == "gmi,ppa,diffmi,fgmia"
    assert set(tree["attacks"]) == {"gmi", "ppa", "diffmi", "fgmia"}
    assert len(plan_cells(tree["run"])) == 12 and seeds(tree["run"]) == [4, 5, 6]
    plain = resolve("smoke", flags={"attacks": "gmi", "targets": "arcface", "aux": "wild"})
    assert [(c.attack, c.target, c.aux) for c in plan_cells(plain["run"])] == [
        ("gmi", "arcface-18", "wild")]


def test_an_experiment_with_other_aux_sets_is_a_one_line_error(capsys):
    assert main(["run", "--experiment", "table6", "--aux", "wild", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "--experiment table6 fixes aux; drop --aux" in err and err.count("\n") == 1


def test_attacks_and_targets_keep_a_subset_of_an_experiment_in_its_order():
    tree = resolve("smoke", flags={"experiment": "defenses", "attacks": "fgmia,gmi",
                                   "targets": "ir152,ir152+*"})
    cells = plan_cells(tree["run"])
    assert tree["run"]["attacks"] == "gmi,fgmia" and set(tree["attacks"]) == {"gmi", "fgmia"}
    assert {c.attack for c in cells} == {"gmi", "fgmia"}
    assert {c.target for c in cells} == {t for t in get_experiment("defenses").targets
                                         if t.startswith("ir152")}
    assert len(cells) == 2 * len({c.target for c in cells}) > 2


def test_an_attack_outside_the_experiment_is_a_config_error():
    with pytest.raises(ConfigError, match="table6 has no attacks gmi"):
        resolve("smoke", flags={"experiment": "table6", "attacks": "gmi"})


def test_the_table_is_laid_out_like_the_paper_with_mean_and_std_over_seeds(tmp_path):
    store = Store(tmp_path)
    values = {("fgmia", "arcface-18", aux, seed): base + 0.1 * seed
              for aux, base in (("similar", 0.5), ("hq", 0.6), ("wild", 0.4)) for seed in (0, 1)}
    values |= {("gmi", "arcface-18", aux, seed): base
               for aux, base in (("similar", 0.45), ("hq", 0.2), ("wild", 0.1))
               for seed in (0, 1)}
    stored_run(store, "r1", "table5", values)
    view = experiment_view(load_run(store, "r1"))
    assert view.groups == ["similar", "hq", "wild"] and view.seeds == 2
    rows = dict(view.rows)
    assert list(rows) == ["gmi", "fgmia"]                        # the plan's order
    eval_column = [h.name for h in view.headings].index("eval_acc1")
    width = len(view.headings)
    assert rows["fgmia"][eval_column] == "0.550 ± 0.071"         # mean, sample std of 0.5, 0.6
    assert rows["gmi"][width + eval_column] == "0.200 ± 0.000"   # the hq group
    assert [h.name for h in view.headings] == ["eval_acc1"]     # only what was measured
    assert ("target_acc1", "no finished cell stored it") in view.unmeasured
    [drop] = view.verdicts
    assert drop.holds is True and drop.detail.endswith("gmi: 0.3; fgmia: 0")
    text = experiment_markdown(view)
    assert "#### aux `hq`\n\n| attack | eval_acc1 ↑ |\n|---|---:|\n| `gmi` | 0.200 ± 0.000 |" in text
    assert "Not measured in this run: `target_acc1` (no finished cell stored it)" in text
    assert "| FGMIA loses the least Eval Acc when the aux set shifts | reproduced |" in text


def test_findings_say_not_reproduced_and_not_measured_honestly(tmp_path):
    store = Store(tmp_path)
    stored_run(store, "r1", "table6", {("fgmia", "ir152", "similar", 0): 0.5,
                                       ("fgmia-no-scaleft", "ir152", "similar", 0): 0.6,
                                       ("fgmia-no-transf", "ir152", "similar", 0): 0.4,
                                       ("fgmia-no-fg", "ir152", "similar", 0): 0.1})
    [order] = experiment_view(load_run(store, "r1")).verdicts
    assert order.holds is False and "fgmia 0.5 ≥ fgmia-no-scaleft 0.6" in order.detail
    stored_run(store, "r2", "efficiency", {("fgmia", "arcface-18", "similar", 0): 0.1,
                                           ("gmi", "arcface-18", "similar", 0): 3.0})
    view = experiment_view(load_run(store, "r2"))
    [speed] = view.verdicts
    assert speed.holds is True and "gmi/fgmia = 30.0×" in speed.detail   # ppa not run: skipped
    scale = [h.name for h in view.headings].index(AT_SCALE)
    assert dict(view.rows)["fgmia"][scale] == "100 s"            # 0.1 s × 1,000 identities
    stored_run(store, "r3", "table2", {})
    assert all(v.holds is None for v in experiment_view(load_run(store, "r3")).verdicts)


def test_subset_runs_merge_and_a_larger_plan_fills_the_experiments_it_contains(tmp_path):
    store = Store(tmp_path)
    for run_id, target in (("r1", "ir152"), ("r2", "arcface-18")):
        stored_run(store, run_id, "table1-ext",
                   {(a, target, "similar", seed): 0.5 + 0.1 * seed
                    for a in ("gmi", "fgmia", "kedmi") for seed in (0, 1, 2)})
    # the same cell again (a later run of Table VI), and one at another protocol
    stored_run(store, "r3", "table6", {("fgmia", "ir152", "similar", 0): 0.5,
                                       ("fgmia-no-fg", "ir152", "similar", 0): 0.1})
    stored_run(store, "r4", "table6", {("fgmia", "ir152", "similar", 1): 0.9}, identities=50)
    views = {v.experiment.name: v for v in experiment_views(
        [load_run(store, r) for r in ("r1", "r2", "r3", "r4")])}
    assert list(views) == ["table1", "table1-ext", "table6", "efficiency"]
    ext, table1, speed = views["table1-ext"], views["table1"], views["efficiency"]
    assert [r.run_id for r in ext.runs] == ["r1", "r2", "r3"]      # r3 holds FGMIA × IR152 seed 0
    assert ext.groups == ["ir152", "arcface-18"] and ext.seed_values == (0, 1, 2)
    assert [row for row, _ in ext.rows] == ["gmi", "fgmia", "kedmi"]
    assert [row for row, _ in table1.rows] == ["gmi", "fgmia"]          # Table I's attacks only
    assert dict(table1.rows)["fgmia"][0] == "0.600 ± 0.100"            # r4's 0.9 is not in it
    assert [r.run_id for r in table1.borrowed] == ["r1", "r2", "r3"]
    table6 = [v for v in experiment_views([load_run(store, r) for r in ("r3", "r4")])
              if v.experiment.name == "table6"]
    assert [[r.run_id for r in v.runs] for v in table6] == [["r3"], ["r4"]]   # one per protocol
    assert speed.groups == ["arcface-18"] and [r.run_id for r in speed.runs] == ["r2"]
    text = experiment_markdown(table1)
    assert "Cells from run `r1` (experiment `table1-ext`), run `r2` (experiment " in text
    assert "run `r3` (experiment `table6`)" in text
    assert "a subset, attacks gmi, fgmia; targets ir152, arcface-18" in text


def test_a_cell_stored_twice_counts_once_and_presets_do_not_mix(tmp_path):
    store = Store(tmp_path)
    stored_run(store, "r1", "table6", {("fgmia", "ir152", "similar", 0): 0.2})
    stored_run(store, "r2", "table6", {("fgmia", "ir152", "similar", 0): 0.4})
    store.add_cells([CellKey("r2", "fgmia-no-fg", "ir152", "similar", 0)])   # never finished
    stored_run(store, "r3", "table6", {("fgmia-no-fg", "ir152", "similar", 0): 0.1})
    runs = [load_run(store, r) for r in ("r1", "r2", "r3")]
    [view] = experiment_views(runs)
    assert dict(view.rows) == {"fgmia": ["0.400"], "fgmia-no-fg": ["0.100"]}  # latest, finished
    runs[0].config["preset"] = "mini"
    assert [(v.runs[0].preset, len(v.runs)) for v in experiment_views(runs)] == [
        ("mini", 1), ("smoke", 2)]                               # in the order of their runs


def test_a_resumed_run_reports_its_pause_between_sessions_beside_its_wall_time(tmp_path):
    store = Store(tmp_path)
    stored_run(store, "r1", "table6", {})
    run = load_run(store, "r1")
    spans = ((0.0, 10.0), (5.0, 20.0), (7000.0, 7010.0))   # two overlap; a session later, one
    run.cells = [CellRecord("r1", "fgmia", "ir152", "similar", seed, "done", None, {}, {}, None,
                            started=run.created + a, finished=run.created + b)
                 for seed, (a, b) in enumerate(spans)]
    assert run.pause_seconds(600) == 6980.0 and run.wall_seconds == 7010.0
    [facts] = [line for line in run_facts([run]) if line.startswith("- run")]
    assert "experiment `table6`, preset **smoke**" in facts
    assert facts.endswith("wall time 117 min, of which 116 min between sessions (resumed later)")
    run.cells = run.cells[:2]                      # setup before the first cell is not a pause
    for cell in run.cells:
        cell.started, cell.finished = cell.started + 3000.0, cell.finished + 3000.0
    assert run.pause_seconds(600) == 0.0 and run_facts([run])[0].endswith("wall time 50 min")


def test_the_ranking_pools_seeds_and_counts_a_cell_two_runs_hold_once(tmp_path):
    store = Store(tmp_path)
    stored_run(store, "r1", "table1-ext", {("gmi", "ir152", "similar", s): v
                                           for s, v in ((0, 0.2), (1, 0.4), (2, 0.6))}
               | {("fgmia", "ir152", "similar", s): 0.7 for s in (0, 1, 2)})
    stored_run(store, "r2", "table6", {("fgmia", "ir152", "similar", 0): 0.7,
                                       ("fgmia-no-fg", "ir152", "similar", 0): 0.1})
    board = leaderboard_markdown([load_run(store, r) for r in ("r1", "r2")])
    ranking = board[board.index("### Target `ir152`"):].split("\n\n")[1].splitlines()
    rows = [line for line in ranking if line.startswith("| ") and "Rank" not in line]
    assert rows == ["| 1 | fgmia | 0.700 (sd 0.000) | 0, 1, 2 | `r2`, `r1` | smoke |",
                    "| 2 | gmi | 0.400 (sd 0.200) | 0, 1, 2 | `r1` | smoke |",
                    "| 3 | fgmia-no-fg | 0.100 | 0 | `r2` | smoke |"]


def test_what_the_benchmark_shows_names_the_top_tier_per_family_and_threat_model(tmp_path):
    store = Store(tmp_path)
    values = {("fgmia", "ir152", 0.7), ("gmi", "ir152", 0.4), ("uami", "ir152", 0.5),
              ("fgmia-no-transf", "ir152", 0.7),      # an ablation: not an attack of its own
              ("fgmia", "evolve", 0.6), ("diffmi", "evolve", 0.6), ("uami", "evolve", 0.2),
              ("gmi", "arcface-18", 0.3), ("fgmia", "arcface-18", 0.2)}
    stored_run(store, "r1", "table1-ext", {(a, t, "similar", 0): v for a, t, v in values})
    stored_run(store, "r2", "table5", {("gmi", "arcface-18", "hq", 0): 0.9,
                                       ("fgmia", "arcface-18", "hq", 0): 0.1})
    board = leaderboard_markdown([load_run(store, r) for r in ("r1", "r2")])
    assert board.startswith("# mibench leaderboard\n\n## What this benchmark shows\n")
    rows = [line for line in board.split("## What this benchmark shows")[1].split("\n- run")[0]
            .splitlines() if line.startswith("| ") and "family" not in line]
    assert rows == [
        "| closed-set classifiers | white-box (gradients) | fgmia | `evolve`: diffmi, fgmia "
        "(of 2); `ir152`: fgmia (of 2) |",
        "| closed-set classifiers | label-only | uami | `evolve`: uami (of 1); `ir152`: uami "
        "(of 1) |",
        "| open-set embeddings | white-box (gradients) | gmi | `arcface-18`: gmi (of 2) |"]


HEAVY = ("defenses", "defense-sweep", "table1-ext")  # 55 to 100+ cells: slow


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in HEAVY else n
                                  for n in EXPERIMENTS])
def test_every_experiment_runs_at_smoke_and_reports_its_table(name, tmp_path, smoke_cache):
    """Each plan end to end at smoke size (one identity, two samples; Table VI with two seeds),
    then its report and leaderboard section."""
    runs = tmp_path / "runs"
    extra = ["--seeds", "2"] if name == "table6" else []
    assert main(["run", "--experiment", name, "--preset", "smoke", "--identities", "1",
                 "--cache-dir", smoke_cache, "--results-dir", str(runs), "--quiet",
                 *extra]) == 0
    store = Store(runs)
    [run_id] = store.run_ids()
    cells = store.cells(run_id)
    experiment = get_experiment(name)
    assert len(cells) == len(experiment.cells()) * (2 if extra else 1)
    assert all(c["status"] == "done" for c in cells)
    assert main(["report", "--results-dir", str(runs), "--out", str(tmp_path / "out"),
                 "--no-figures", "--quiet", "--leaderboard", "--leaderboard-out",
                 str(tmp_path / "lb.md")]) == 0
    html = (tmp_path / "out" / "index.html").read_text()
    board = (tmp_path / "lb.md").read_text()
    assert experiment.title in html and f"### {experiment.title}" in board
    assert all(f.claim in board for f in experiment.findings)
    if extra:
        assert "mean ± std over 2 seeds" in html and "seeds 0, 1" in board
        assert {c["images"] for c in cells if c["attack"] == "fgmia"} == {
            f"{run_id}/fgmia/ir152/similar/seed{k}/images" for k in (0, 1)}


def test_a_subset_says_so_in_its_summary_and_the_whole_plan_does_not():
    full = get_experiment("defenses")
    assert full.subset(list(full.attacks), None) is full
    part = full.subset(["fgmia", "gmi"], None)
    assert part.attacks == ("gmi", "fgmia") and part.targets == full.targets
    assert part.summary.startswith(full.summary)
    assert part.summary.endswith("this run: a subset, attacks gmi, fgmia")
