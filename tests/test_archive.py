"""``mibench results export`` / ``import``: a run's numbers, intervals and resampled values
move between results directories unchanged; a store keeps what it has; bad files are one-line
errors."""

from __future__ import annotations

import numpy as np

from mibench.archive import copy_runs, export_run, import_runs
from mibench.cli import main
from mibench.metrics.bootstrap import Interval, to_row
from mibench.reports.runs import load_run
from mibench.store import CellKey, Store


def stored(store: Store, run_id: str, value: float) -> None:
    store.create_run(run_id, {"preset": "smoke", "run": {}}, {"commit": "abc"}, "cpu", "mibench")
    keys = [CellKey(run_id, "gmi", "ir152", "similar", seed) for seed in (0, 1)]
    store.add_cells(keys)
    replicates = np.linspace(value - 0.1, value + 0.1, 50)
    for key in keys:
        store.start_cell(key)
        iv = Interval("eval_acc1", value - 0.1, value + 0.1, "percentile", 10, 0, replicates,
                      detail={"generated": 160.0, "private": 80.0})
        store.finish_cell(key, [("all", "eval_acc1", value + key.seed, None),
                                ("all", "fid", None, "no Inception weights")],
                          {"attack_s": 1.5}, {"per_identity": {"forward": 3}}, "",
                          (to_row("all", iv),))
    store.fail_cell(CellKey(run_id, "gmi", "ir152", "similar", 1), "boom")


def test_an_exported_run_imports_with_every_number_and_replicate(tmp_path):
    source = Store(tmp_path / "a")
    stored(source, "r1", 0.4)
    stored(source, "r2", 0.7)
    path = export_run(source, "r1", tmp_path / "parts")
    assert path.name == "r1.db.xz"
    dest = Store(tmp_path / "b")
    assert import_runs(dest, path) == ["r1"]
    assert dest.run_ids() == ["r1"]                          # only the exported run
    before, after = load_run(source, "r1"), load_run(dest, "r1")
    assert after.config == before.config and after.versions == before.versions
    for old, new in zip(before.cells, after.cells):
        assert (new.status, new.error, new.timings, new.queries) == (
            old.status, old.error, old.timings, old.queries)
        assert new.metrics == old.metrics
        iv_old, iv_new = old.interval("all", "eval_acc1"), new.interval("all", "eval_acc1")
        assert np.array_equal(iv_new.replicates, iv_old.replicates)
        assert iv_new.detail == iv_old.detail and iv_new.low == iv_old.low
    assert import_runs(dest, path) == []                     # a run it holds is left alone
    assert copy_runs(source.path, dest.path) == ["r2"]


def test_results_commands_round_trip_and_bad_files_are_one_line_errors(tmp_path, capsys):
    stored(Store(tmp_path / "a"), "r1", 0.4)
    assert main(["results", "export", "--results-dir", str(tmp_path / "a"),
                 "--out", str(tmp_path / "parts")]) == 0
    assert "wrote" in capsys.readouterr().out
    part = tmp_path / "parts" / "r1.db.xz"
    assert main(["results", "import", str(part), "--results-dir", str(tmp_path / "b")]) == 0
    assert capsys.readouterr().out.strip() == f"{part}: added r1"
    assert main(["results", "export", "nope", "--results-dir", str(tmp_path / "a"),
                 "--out", str(tmp_path / "parts")]) == 2
    assert "nope" in capsys.readouterr().err
    bad = tmp_path / "bad.db.xz"
    bad.write_bytes(b"not xz at all")
    assert main(["results", "import", str(bad), "--results-dir", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"mibench: error: {bad} is not an exported run") and err.count("\n") == 1
    assert main(["results", "import", str(tmp_path / "gone.db.xz"),
                 "--results-dir", str(tmp_path / "b")]) == 2
    assert "no exported run at" in capsys.readouterr().err
