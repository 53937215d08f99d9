"""Reports name no machine's paths: torch hub's folder is ``$TORCH_HOME/hub``, both in the
reasons metrics give now and in reasons stored by earlier runs (issue 19, item 7)."""

from __future__ import annotations

import pytest
import torch
from test_report import report

from mibench.metrics.base import MetricUnavailable
from mibench.metrics.inception import load_fid_inception
from mibench.metrics.perceptual import load_lpips
from mibench.store import CellKey, Store

OLD_REASON = ("standard LPIPS needs torchvision's ImageNet AlexNet weights "
              "alexnet-owt-7be5be79.pth in {} (not shipped by any package; st_lpips is "
              "reported instead)")


def test_a_missing_weights_reason_names_torch_home_not_the_machine_path(tmp_path,
                                                                       monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))      # an empty hub
    with pytest.raises(MetricUnavailable) as lpips:
        load_lpips(torch.device("cpu"))
    assert "in $TORCH_HOME/hub/checkpoints (" in str(lpips.value)
    assert str(tmp_path) not in str(lpips.value)
    monkeypatch.setattr("mibench.metrics.inception.fid_helper_weights", lambda: None)
    with pytest.raises(MetricUnavailable) as fid:
        load_fid_inception(torch.device("cpu"))
    assert "in $TORCH_HOME/hub/checkpoints or" in str(fid.value)
    assert str(tmp_path) not in str(fid.value)


def test_the_leaderboard_footnote_of_an_older_run_names_torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    store = Store(tmp_path / "runs")
    store.create_run("r1", {"preset": "smoke", "run": {"identities": 2, "samples": 2}},
                     {"torch": "2.x"}, "cpu", "mibench run --preset smoke")
    here = f"{tmp_path}/torch/hub/checkpoints"                   # this machine's hub folder
    for attack, folder in (("gmi", "/root/.cache/torch/hub/checkpoints"), ("ppa", here)):
        key = CellKey("r1", attack, "arcface-18", "similar", 0)
        store.add_cells([key])
        store.start_cell(key)
        store.finish_cell(key, [("all", "eval_acc1", 0.5, None),
                                ("all", "lpips", None, OLD_REASON.format(folder))], {}, {}, "")
    monkeypatch.chdir(tmp_path)
    report(tmp_path, "--leaderboard")
    text = (tmp_path / "leaderboard.md").read_text()
    assert f"[^1]: {OLD_REASON.format('$TORCH_HOME/hub/checkpoints')}" in text
    assert "/root/" not in text and str(tmp_path) not in text
    assert text.count("alexnet-owt") == 1                    # both cells' reasons: one footnote
