"""`mibench report`: a smoke run rendered and opened in headless Chromium, plus the table rules
(best per direction, missing values with reasons), run comparison, the leaderboard and errors."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import gc
import weakref

import pytest
import torch
from test_metrics import PROTOTYPES, MeanColour

from mibench.cli import main
from mibench.reports import render, samples
from mibench.reports.private import PrivateView
from mibench.reports.runs import load_run
from mibench.findings import Stat, leaders
from mibench.reports.tables import MISSING, metric_table
from mibench.store import CellKey, Store
from mibench.world import Split

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--hide-scrollbars"]
NO_FID = "Inception weights are not in this cache"


def fake_run(store: Store, run_id: str, cells: dict[tuple[str, str], dict[str, float] | str],
             command: str = "mibench run --preset smoke", images: bool = False) -> None:
    """A stored run (with ``images``, random 8 px ``samples.pt`` of identities 0-2 per done
    cell): each cell has metric values, or an error string."""
    store.create_run(run_id, {"preset": "smoke", "run": {"identities": 2, "samples": 2}},
                     {"torch": "2.x"}, "cpu", command)
    keys = {cell: CellKey(run_id, *cell, "similar", 0) for cell in cells}
    store.add_cells(list(keys.values()))
    for cell, outcome in cells.items():
        store.start_cell(keys[cell])
        if isinstance(outcome, str):
            store.fail_cell(keys[cell], outcome)
            continue
        rows = [(subset, name, value, None) for subset in ("all", "selected")
                for name, value in outcome.items()]
        rows += [(subset, "fid", None, NO_FID) for subset in ("all", "selected")]
        folder = f"{run_id}/{'/'.join(cell)}/images" if images else ""
        if images:
            (store.root / folder).mkdir(parents=True)
            gen = torch.Generator().manual_seed(len(folder))
            torch.save({"images": torch.randint(0, 256, (6, 3, 8, 8), dtype=torch.uint8,
                                                generator=gen),
                        "labels": torch.tensor([0, 0, 1, 1, 2, 2]),
                        "selected": torch.tensor([1, 2, 5])}, store.root / folder / "samples.pt")
        store.finish_cell(keys[cell], rows, {"prepare_s": 1.0, "attack_s_per_identity": 2.0},
                          {"per_identity": {"forward": 8, "gradient": 6}}, folder)


def report(tmp_path: Path, *args: str) -> str:
    out = tmp_path / "out"
    assert main(["report", "--results-dir", str(tmp_path / "runs"), "--out", str(out),
                 "--no-figures", "--quiet", *args]) == 0
    return (out / "index.html").read_text()


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    pytest.fail("headless Chromium is required for the report test and is not installed: "
                "apt-get install -y chromium")


def browse(html: Path, tmp_path: Path, *action: str) -> str:
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    done = subprocess.run([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *action,
                           html.as_uri()], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_smoke_report_is_self_contained_and_every_image_loads(cache, tmp_path, capsys):
    results, out = tmp_path / "runs", tmp_path / "out"
    assert main(["run", "--preset", "smoke", "--identities", "2", "--attacks", "gmi",
                 "--targets", "arcface", "--results-dir", str(results),
                 "--cache-dir", str(cache.root), "--quiet"]) == 0
    assert main(["report", "--results-dir", str(results), "--out", str(out), "--quiet"]) == 0
    page = out / "index.html"
    html = page.read_text()
    assert f"wrote {page}" in capsys.readouterr().out
    images = html.count("<img ")
    assert images and html.count('src="data:image/png;base64,') == images
    for alt in ("private image of identity 1", "gmi image of identity 1 (selected)",
                "similarity heatmap gmi → arcface-18", "t-SNE of run"):
        assert f'alt="{alt}' in html
    assert not re.search(r'(src|href)="(https?:|//)', html) and "<link" not in html
    for section in ("Metrics", "Efficiency", "Samples", "Identity similarity", "Embeddings",
                    "Protocol", "Metric definitions"):
        assert f">{section}<" in html
    dom = browse(page, tmp_path, "--dump-dom")
    assert f'data-images-loaded="{images}/{images}"' in dom
    shot = tmp_path / "report.png"
    browse(page, tmp_path, f"--screenshot={shot}", "--window-size=1280,1600")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


def test_best_per_column_follows_the_metric_direction(tmp_path):
    store = Store(tmp_path / "runs")
    fake_run(store, "r1", {("gmi", "arcface-18"): {"eval_acc1": 0.8, "knn_l2": 0.5},
                           ("ppa", "arcface-18"): {"eval_acc1": 0.2, "knn_l2": 0.1},
                           ("gmi", "ir152"): {"eval_acc1": 0.3, "knn_l2": 0.4}})
    table = metric_table(load_run(store, "r1").cells)
    assert [c.name for c in table.columns] == ["eval_acc1", "knn_l2", "fid"]
    arcface, ir152 = table.groups
    best = {row.attack: [v.best for v in row.values] for row in arcface.rows}
    assert best == {"gmi": [True, False, False], "ppa": [False, True, False]}
    assert not any(v.best for v in ir152.rows[0].values)     # nothing to beat: no mark
    point = [None if v is None else Stat(v, None, 1) for v in (0.5, None, 0.5, 0.1)]
    assert leaders(point, higher=True) == ({0, 2}, False)         # equal values: tied
    assert leaders(point[2:], higher=False) == ({1}, True) and leaders(point[:1], True)[0] == set()
    html = report(tmp_path)
    assert html.count('class="num best"') == 2 and "eval_acc1 <span class=\"arrow\">↑" in html


def test_a_missing_metric_shows_its_reason_never_zero(tmp_path):
    store = Store(tmp_path / "runs")
    fake_run(store, "r1", {("gmi", "arcface-18"): {"eval_acc1": 0.0}})
    row = metric_table(load_run(store, "r1").cells).groups[0].rows[0]
    fid = row.values[1]
    assert (fid.all.text, fid.all.reason, fid.all.note) == (MISSING, NO_FID, 1)
    assert row.values[0].all.text == "0.000"                  # a real zero stays a zero
    html = report(tmp_path)
    assert html.count(f'title="{NO_FID}"') == 2               # all and selected
    assert f'<li id="note-r1-1">{NO_FID}</li>' in html


def test_the_report_holds_one_cells_samples_at_a_time(tmp_path, monkeypatch):
    """Issue 17: Table I's samples are ~24 GB; the report loads, uses and drops each cell's
    (grids first, then heatmaps and t-SNE), and draws every figure."""
    fake_run(Store(tmp_path / "runs"), "r1", {(attack, target): {"eval_acc1": 0.5}
                                              for attack in ("fmi", "gmi")
                                              for target in ("arcface-18", "ir152")}, images=True)
    colours = torch.rand(9, 3, generator=torch.Generator().manual_seed(3))
    split = Split("private-train", (colours[:, :, None, None] * 255).to(
        torch.uint8).expand(9, 3, 8, 8).contiguous(), torch.arange(9) % 3, torch.arange(9) % 3)
    monkeypatch.setattr(render, "load_private", lambda *args: PrivateView(
        split, MeanColour(PROTOTYPES), torch.device("cpu")))
    live: list[weakref.ref] = []
    load = samples.load_samples

    def one_at_a_time(folder):
        gc.collect()
        assert not [ref for ref in live if ref() is not None], "another cell's samples are held"
        loaded = load(folder)
        live.append(weakref.ref(loaded))
        return loaded

    monkeypatch.setattr(render, "load_samples", one_at_a_time)
    out = tmp_path / "out"
    assert main(["report", "--results-dir", str(tmp_path / "runs"), "--out", str(out),
                 "--quiet"]) == 0
    html = (out / "index.html").read_text()
    assert len(live) == 8                                       # grids, then figures
    assert html.count('alt="similarity heatmap') == 4 and 'alt="t-SNE of run' in html
    assert html.count('alt="gmi image of identity 1 (selected)') == 2


def test_two_runs_are_compared_and_failed_cells_show_their_error(tmp_path):
    store = Store(tmp_path / "runs")
    fake_run(store, "r1", {("gmi", "arcface-18"): {"eval_acc1": 0.4}})
    fake_run(store, "r2", {("gmi", "arcface-18"): {"eval_acc1": 0.6},
                           ("ppa", "arcface-18"): "RuntimeError: prior diverged"})
    assert "Comparison of" not in report(tmp_path)            # default: the latest run only
    html = report(tmp_path, "r1", "r2")
    assert "Comparison of 2 runs" in html
    assert 'id="run-r1"' in html and 'id="run-r2"' in html and 'href="#run-r1"' in html
    assert html.count('class="num best"') == 1                # r2 beats r1 across runs
    assert "failed: RuntimeError: prior diverged" in html


def test_leaderboard_markdown(tmp_path, monkeypatch, capsys):
    store = Store(tmp_path / "runs")
    fake_run(store, "r1", {("gmi", "arcface-18"): {"eval_acc1": 0.25, "knn_l2": 0.1},
                           ("ppa", "arcface-18"): {"eval_acc1": 0.75, "knn_l2": 0.2},
                           ("kedmi", "arcface-18"): "ValueError: boom"},
             command="mibench run --attacks all --targets arcface")
    monkeypatch.chdir(tmp_path)
    report(tmp_path, "--leaderboard")
    text = (tmp_path / "leaderboard.md").read_text()
    rows = [line for line in text.split("## Ranking per target")[1].splitlines()
            if line.startswith("| ")]
    assert rows[0] == ("| Rank | Attack | eval_acc1 ↑ | knn_l2 ↓ | fid ↓ | Seeds | Runs | "
                       "Preset |")
    assert rows[1] == "| 1 | ppa | 0.750 | 0.200 | n/a[^1] | 0 | `r1` | smoke |"
    assert rows[2] == "| 2 | gmi | 0.250 | 0.100 | n/a[^1] | 0 | `r1` | smoke |"
    assert "`mibench run --attacks all --targets arcface`" in text
    assert f"[^1]: {NO_FID}" in text and "`kedmi` × `arcface-18` (run `r1`): failed" in text
    fake_run(store, "r2", {("fgmia", "ir152"): {"eval_acc1": 0.5}})
    report(tmp_path, "--leaderboard")   # the latest run only
    assert "`r1`" not in (tmp_path / "leaderboard.md").read_text()
    report(tmp_path, "--leaderboard", "--all")
    both = (tmp_path / "leaderboard.md").read_text()
    assert "### Target `ir152`" in both and "### Target `arcface-18`" in both
    assert main(["report", "r1", "--all", "--results-dir", str(tmp_path / "runs")]) == 2
    assert "give run ids or --all, not both" in capsys.readouterr().err
    custom = tmp_path / "board" / "lb.md"
    report(tmp_path, "--leaderboard", "--leaderboard-out", str(custom), "r1")
    assert custom.read_text() == text


def test_unknown_runs_and_missing_results_are_one_line_errors(tmp_path, capsys):
    fake_run(Store(tmp_path / "runs"), "r1", {("gmi", "arcface-18"): {"eval_acc1": 0.5}})
    assert main(["report", "nope", "--results-dir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mibench: error: no run 'nope'") and err.count("\n") == 1
    assert main(["report", "--results-dir", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert "no results in" in err and err.count("\n") == 1
    assert not (tmp_path / "empty").exists()
    assert main(["report", "--list", "--results-dir", str(tmp_path / "runs")]) == 0
    assert "r1" in capsys.readouterr().out


def test_fgmia_ablations_that_equal_fgmia_on_open_set_targets_are_marked(tmp_path, monkeypatch):
    """TransF and ScaleFT act on a closed-set head: on ArcFace (open set) those two ablations
    compute FGMIA itself, and the report and leaderboard say so instead of showing new rows."""
    same = {"eval_acc1": 0.5}
    store = Store(tmp_path / "runs")
    fake_run(store, "r1", {(attack, target): same
                           for attack in ("fgmia", "fgmia-no-transf", "fgmia-no-scaleft",
                                          "fgmia-no-fg")
                           for target in ("arcface-18", "ir152")})
    table = metric_table(load_run(store, "r1").cells)
    notes = {(g.target, r.attack): r.note for g in table.groups for r in g.rows}
    assert notes[("arcface-18", "fgmia-no-transf")] == "same as fgmia on open-set targets"
    assert notes[("arcface-18", "fgmia-no-scaleft")] == "same as fgmia on open-set targets"
    assert notes[("arcface-18", "fgmia-no-fg")] is None  # the condition changes: a real ablation
    assert notes[("arcface-18", "fgmia")] is None
    assert all(notes[("ir152", a)] is None for a in ("fgmia-no-transf", "fgmia-no-scaleft"))
    assert "fgmia-no-transf <span class=\"same\">(same as fgmia on open-set targets)" in report(
        tmp_path)
    monkeypatch.chdir(tmp_path)
    report(tmp_path, "--leaderboard")
    board = (tmp_path / "leaderboard.md").read_text()
    assert "| fgmia-no-scaleft (same as fgmia on open-set targets) |" in board
    assert "| fgmia-no-scaleft |" in board  # ir152 (closed set): a real ablation row
