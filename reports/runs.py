"""What a report shows of a run, read from the results store (and nothing else)."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mibench.errors import MibenchError
from mibench.metrics.bootstrap import Interval, from_row
from mibench.store import DB_NAME, CellStatus, Store
from mibench.targets.enrolment import run_enrolment

TORCH_HUB = "$TORCH_HOME/hub"
_DEFAULT_HUB = re.compile(r"[^\s()]*/\.cache/torch/hub")


def portable_reason(reason: str | None) -> str | None:
    """A stored missing-value reason without machine paths to torch hub's folder (reasons of
    runs before ``metrics.inception.HUB_CHECKPOINTS`` named it): this machine's hub folder and
    any ``…/.cache/torch/hub`` are written ``$TORCH_HOME/hub``."""
    if reason is None:
        return None
    return _DEFAULT_HUB.sub(TORCH_HUB, reason.replace(torch.hub.get_dir(), TORCH_HUB))


@dataclass(frozen=True)
class Measurement:
    """One metric of one image set: a value, or the reason there is none."""

    value: float | None
    reason: str | None = None


@dataclass
class CellRecord:
    """One (attack, target) cell of a run with its metrics and their intervals per image set
    (no intervals for runs stored before they existed)."""

    run_id: str
    attack: str
    target: str
    aux: str
    seed: int
    status: str
    error: str | None
    timings: dict[str, float]
    queries: dict[str, Any]
    images: Path | None
    metrics: dict[str, dict[str, Measurement]] = field(default_factory=dict)
    intervals: dict[str, dict[str, Interval]] = field(default_factory=dict)
    started: float | None = None
    finished: float | None = None
    enrolment: str = "mean"
    """The run's open-set gallery protocol (``run.enrolment``): part of what a cell measured."""

    @property
    def done(self) -> bool:
        return self.status == CellStatus.DONE

    def measurement(self, subset: str, name: str) -> Measurement | None:
        return self.metrics.get(subset, {}).get(name)

    def interval(self, subset: str, name: str) -> Interval | None:
        return self.intervals.get(subset, {}).get(name)


@dataclass
class RunRecord:
    """A stored run: its configuration, environment and cells."""

    run_id: str
    created: float
    config: dict[str, Any]
    versions: dict[str, str]
    device: str
    command: str
    cells: list[CellRecord]
    warnings: tuple[str, ...] = ()

    @property
    def preset(self) -> str:
        return str(self.config.get("preset", "?"))

    @property
    def date(self) -> str:
        return time.strftime("%Y-%m-%d %H:%M", time.localtime(self.created))

    @property
    def attacks(self) -> list[str]:
        return sorted({c.attack for c in self.cells})

    @property
    def targets(self) -> list[str]:
        return sorted({c.target for c in self.cells})

    @property
    def experiment(self) -> str:
        return str(self.config.get("run", {}).get("experiment") or "")

    @property
    def seeds(self) -> list[int]:
        return sorted({c.seed for c in self.cells})

    @property
    def wall_seconds(self) -> float | None:
        """From the run's creation to its last finished cell (resumed runs include the gap)."""
        finished = [c.finished for c in self.cells if c.finished is not None]
        return max(finished) - self.created if finished else None

    def pause_seconds(self, longer_than: float) -> float:
        """The gaps between cells longer than ``longer_than`` seconds, summed: the time between
        the sessions of a run resumed later (the spans of its cells merged; the setup before
        the first cell, e.g. training targets, is not a gap)."""
        spans = sorted((c.started, c.finished) for c in self.cells
                       if c.started is not None and c.finished is not None)
        total, end = 0.0, None
        for start, finish in spans:
            if end is not None and start - end > longer_than:
                total += start - end
            end = finish if end is None else max(end, finish)
        return total


def open_store(results_dir: str | Path) -> Store:
    """The store of ``results_dir``; an error (not an empty new store) when there is none."""
    if not (Path(results_dir) / DB_NAME).is_file():
        raise MibenchError(f"no results in {results_dir} (no {DB_NAME}); run `mibench run` "
                           f"first or pass --results-dir")
    return Store(results_dir)


def pick_run_ids(store: Store, requested: list[str], *, every: bool = False) -> list[str]:
    """``requested`` checked against the store, or the latest run when none is given; with
    ``every``, all runs in the order they were created."""
    known = store.run_ids()
    if not known:
        raise MibenchError(f"{store.path} holds no runs yet; start one with `mibench run`")
    if every:
        if requested:
            raise MibenchError("give run ids or --all, not both")
        return known
    if not requested:
        return [known[-1]]
    for run_id in requested:
        if run_id not in known:
            raise MibenchError(f"no run {run_id!r} in {store.path}; known runs: "
                               f"{', '.join(known[-5:])} (all: `mibench report --list`)")
    return list(dict.fromkeys(requested))


def load_run(store: Store, run_id: str) -> RunRecord:
    """Everything the report needs about ``run_id``."""
    meta = store.run(run_id)
    enrolment = run_enrolment(meta["config"].get("run", {}))
    cells = {}
    for row in store.cells(run_id):
        images = store.root / row["images"] if row["images"] else None
        cell = CellRecord(run_id, row["attack"], row["target"], row["aux"], row["seed"],
                          row["status"], row["error"], row["timings"], row["queries"], images,
                          started=row["started"], finished=row["finished"],
                          enrolment=enrolment)
        cells[(cell.attack, cell.target, cell.aux, cell.seed)] = cell
    for row in store.metrics(run_id):
        owner = cells.get((row["attack"], row["target"], row["aux"], row["seed"]))
        if owner is not None:
            owner.metrics.setdefault(row["subset"], {})[row["name"]] = Measurement(
                row["value"], portable_reason(row["reason"]))
    for row in store.intervals(run_id):
        owner = cells.get((row["attack"], row["target"], row["aux"], row["seed"]))
        if owner is not None:
            owner.intervals.setdefault(row["subset"], {})[row["name"]] = from_row(row)
    return RunRecord(run_id, meta["created"], meta["config"], meta["versions"], meta["device"],
                     meta["command"], list(cells.values()), tuple(meta["warnings"]))


PROTOCOL_FIELDS = ("identities", "samples", "enrolment", "eval_model", "eval2_model", "precision")


def protocol_key(run: RunRecord) -> str:
    """What two runs share when their cells measure the same thing: preset, world, attacked
    identities and samples, enrolment, evaluation models and precision (as JSON)."""
    fields = run.config.get("run", {})
    return json.dumps([run.preset, run.config.get("world"),
                       {k: fields.get(k) for k in PROTOCOL_FIELDS}], sort_keys=True, default=str)


def attack_config(run: RunRecord, attack: str) -> str:
    """The run's configuration of ``attack`` (as JSON; ``null`` when it has none)."""
    return json.dumps(run.config.get("attacks", {}).get(attack), sort_keys=True, default=str)


def latest_cells(runs: list[RunRecord]) -> dict[tuple, CellRecord]:
    """Each cell of ``runs`` once — ``(protocol, attack config, attack, target, aux, seed)`` →
    the cell: finished before unfinished, then the latest run (runs in store order)."""
    cells: dict[tuple, CellRecord] = {}
    for run in runs:
        protocol = protocol_key(run)
        for cell in run.cells:
            key = (protocol, attack_config(run, cell.attack), cell.attack, cell.target,
                   cell.aux, cell.seed)
            if key not in cells or cell.done or not cells[key].done:
                cells[key] = cell
    return cells
