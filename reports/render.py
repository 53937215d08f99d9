"""Render runs of a results store into one self-contained ``index.html`` (Jinja2)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import torch
import yaml
from tqdm.auto import tqdm

from mibench import __version__
from mibench.cache import atomic_write_bytes
from mibench.config import SOURCES
from mibench.errors import MibenchError
from mibench.registry import ATTACKS
from mibench.reports.defense_plot import tradeoff_uri
from mibench.reports.experiment import ExperimentView, experiment_view, verdict_mark
from mibench.reports.figures import identity_centroids, similarity_heatmap, tsne_figure
from mibench.reports.leakage import LeakageRow, leakage_rows
from mibench.reports.private import PrivateView, load_private
from mibench.reports.runs import CellRecord, RunRecord
from mibench.reports.samples import SampleGrid, load_samples, sample_grid
from mibench.reports.tables import (FLAG_LEGEND, FLAG_MARK, Column, EfficiencyRow, MetricTable,
                                    cell_label, efficiency_rows, metric_columns, metric_table)
from mibench.targets.enrolment import run_enrolment
from mibench.targets.zoo import DEFAULT_EVALUATOR, second_evaluator_name

TEMPLATES = Path(__file__).parent / "templates"
TsnePanel = tuple[str, np.ndarray, np.ndarray]   # (title, features, labels) of one cell
HEATMAP_ROWS = 24        # generated identities shown per heatmap
HEATMAP_COLUMNS = 24     # private identities shown per heatmap (at least the attacked ones)
TSNE_IDENTITIES = 10     # identities in the t-SNE (one colour each)


@dataclass(frozen=True)
class Plot:
    title: str
    uri: str


@dataclass
class RunSection:
    """Everything the template shows for one run."""

    run: RunRecord
    metrics: MetricTable
    efficiency: list[EfficiencyRow]
    grids: list[SampleGrid]
    protocol: list[tuple[str, str]]
    config_yaml: str
    heatmaps: list[Plot] = field(default_factory=list)
    tsne: Plot | None = None
    figures_note: str | None = None
    has_private: bool = False
    experiment: ExperimentView | None = None
    tradeoff: str | None = None           # accuracy–privacy plot (runs with defended targets)
    leakage: list[LeakageRow] = field(default_factory=list)  # synthetic worlds only


ENROLMENT_ROWS = {
    "single": "single: one private-train image per identity, a seeded choice (the paper's; "
              "targets/enrolment.py)",
    "mean": "mean: the normalised mean embedding of all the identity's private-train images",
}


def protocol_rows(run: RunRecord) -> list[tuple[str, str]]:
    """The facts needed to reproduce and interpret the run's numbers."""
    run_cfg: dict[str, Any] = run.config.get("run", {})
    world: dict[str, Any] = run.config.get("world", {})
    spaces = [f"{name}: {cfg['space']} space" + (" (CPU-sized; the paper's prior is pixel-space)"
                                                  if cfg["space"] == "latent" else "")
              for name, cfg in run.config.get("attacks", {}).items() if "space" in cfg]
    rows = [
        ("run", run.run_id),
        ("created", run.date),
        ("command", run.command or "—"),
        ("preset", run.preset),
        ("device", run.device),
        ("world", f"{run_cfg.get('world', '?')} ({world.get('style', '?')}, "
                  f"{world.get('resolution', '?')} px, {world.get('private_identities', '?')} "
                  f"private identities)"),
        ("attacked", f"the first {run_cfg.get('identities', '?')} private identities, "
                     f"{run_cfg.get('samples', '?')} samples each"),
        ("image sets", "all = every generated image; selected = the attack's own pick, one per "
                       "identity (it sees only what its access level allows)"),
        ("auxiliary data", ", ".join(sorted({c.aux for c in run.cells}))
         or str(run_cfg.get("aux", "?"))),
        ("seeds", ", ".join(map(str, run.seeds)) or str(run_cfg.get("seed", "?"))),
        ("evaluation model", _evaluator_row(run_cfg.get("eval_model") or DEFAULT_EVALUATOR)),
        ("second evaluation model", _second_evaluator_row(second_evaluator_name(run_cfg))),
        ("open-set enrolment", ENROLMENT_ROWS[run_enrolment(run_cfg)]),
    ]
    if spaces:
        rows.append(("diffusion priors", "; ".join(spaces)))
    rows += value_source_rows(run.config.get("attacks", {}))
    if run.warnings:
        rows.append(("warnings", "; ".join(run.warnings)))
    return rows


def value_source_rows(attacks: dict[str, Any]) -> list[tuple[str, str]]:
    """For each attack whose config marks where its defaults come from (``param(source=...)``,
    the attacks without public code), which fields are the paper's and which are ours
    (``config.SOURCES``); "paper: none" is said outright."""
    rows = []
    for name in attacks:
        if name not in ATTACKS:
            continue
        config = ATTACKS.get(name).Config
        by_source: dict[str, list[str]] = {}
        for field in config.field_names():
            source = config.source(field)
            if source is not None:
                by_source.setdefault(source, []).append(field)
        if by_source:
            rows.append((f"{name} defaults by source", "; ".join(
                f"{source}: {', '.join(by_source.get(source, ['none']))}"
                for source in SOURCES if source in by_source or source == "paper")))
    return rows


def _evaluator_row(name: str) -> str:
    """The run's evaluation model (``--eval-model``), as the protocol table names it."""
    trained = " trained on private-train," if name == DEFAULT_EVALUATOR else " pretrained,"
    return f"{name},{trained} never attacked"


def _second_evaluator_row(name: str | None) -> str:
    """The run's second evaluation model (``run.eval2_model``) and the transfer flag's rule."""
    if name is None:
        return "none (run.eval2_model: none): no eval2_acc1/5, no transfer_gap"
    return (f"{name}, trained on private-train with another family and recipe, never attacked; "
            f"{FLAG_MARK} flags a cell where {FLAG_LEGEND}")


def build_section(run: RunRecord, *, figures: bool, cache_dir: str | None,
                  progress: bool) -> RunSection:
    """Tables, sample grids and (with ``figures``) heatmaps and t-SNE of one run."""
    section = RunSection(run, metric_table(run.cells), efficiency_rows(run.cells), [],
                         protocol_rows(run), yaml.safe_dump(run.config, sort_keys=False),
                         experiment=experiment_view(run), tradeoff=tradeoff_uri(run.cells),
                         leakage=leakage_rows(run.cells))
    private = None
    if figures:
        try:
            private = load_private(run.config, cache_dir, progress)
        except MibenchError as err:
            section.figures_note = f"private images and evaluation model unavailable: {err}"
    else:
        section.figures_note = "private images, heatmaps and t-SNE not drawn (--no-figures)"
    section.has_private = private is not None
    first_seed = min(run.seeds, default=0)   # figures show one seed; tables show them all
    cells = sorted((c for c in run.cells if c.seed == first_seed),
                   key=lambda c: (c.attack, c.target, c.aux))
    ready = []
    for cell in cells:
        grid, classes = _cell_grid(cell, private, cell_label(cell, cells))
        section.grids.append(grid)
        if classes is not None:
            ready.append((f"{cell_label(cell, cells)} → {cell.target}", cell, classes))
    if private is not None and ready:
        _add_figures(section, private, ready, progress)
    return section


def _cell_grid(cell: CellRecord, private: PrivateView | None,
               label: str) -> tuple[SampleGrid, list[int] | None]:
    """The cell's sample grid and attacked classes (None without samples). Its samples are
    dropped on return: a report holds one cell's at a time (Table I's are ~24 GB in all)."""
    samples = load_samples(cell.images) if cell.done else None
    classes = None if samples is None else samples.classes
    return sample_grid(cell, samples, private, label), classes


def _cell_figures(private: PrivateView, title: str, cell: CellRecord, columns: list[int],
                  centroids: torch.Tensor, shown: torch.Tensor) -> tuple[Plot, TsnePanel]:
    """One cell's heatmap and its t-SNE panel (the embeddings of the ``shown`` identities),
    from its samples loaded again (and dropped on return)."""
    samples = load_samples(cell.images)
    if samples is None:
        raise MibenchError(f"{cell.images}/samples.pt vanished while the report was being "
                           f"drawn; render it again once the run has finished")
    features = private.embed(samples.images)
    rows = samples.classes[:HEATMAP_ROWS]
    similarity = identity_centroids(features, samples.labels, rows) @ centroids.T
    mine = torch.isin(samples.labels, shown)
    return (Plot(title, similarity_heatmap(similarity.numpy(), rows, columns, title)),
            (title, features[mine].numpy(), samples.labels[mine].numpy()))


def _add_figures(section: RunSection, private: PrivateView,
                 generated: list[tuple[str, CellRecord, list[int]]], progress: bool) -> None:
    """Heatmaps and t-SNE of the cells ``generated`` (title, cell, attacked classes), whose
    samples are loaded again one cell at a time."""
    attacked = sorted({label for _, _, classes in generated for label in classes})
    columns = sorted(set(range(min(private.split.num_classes, HEATMAP_COLUMNS)))
                     | set(attacked[:HEATMAP_ROWS]))
    private_features, private_labels = private.class_features(columns)
    centroids = identity_centroids(private_features, private_labels, columns)
    bar = tqdm(total=len(generated) + 1, desc=f"report {section.run.run_id}", unit="figure",
               disable=not progress, dynamic_ncols=True)
    shown = torch.tensor(attacked[:TSNE_IDENTITIES])
    keep = torch.isin(private_labels, shown)
    panels = []
    for title, cell, _ in generated:
        bar.set_postfix_str(f"heatmap {title}")
        heatmap, panel = _cell_figures(private, title, cell, columns, centroids, shown)
        section.heatmaps.append(heatmap)
        panels.append(panel)
        bar.update()
    points = int(keep.sum()) + sum(len(p[1]) for p in panels)
    bar.set_postfix_str(f"t-SNE of {points} embeddings")
    if points >= 8:
        uri = tsne_figure((private_features[keep].numpy(), private_labels[keep].numpy()), panels,
                          seed=int(section.run.config.get("run", {}).get("seed", 0)))
        section.tsne = Plot(f"t-SNE of {points} evaluation embeddings", uri)
    bar.update()
    bar.close()


def render_html(sections: list[RunSection], combined: MetricTable | None,
                columns: list[Column]) -> str:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES),
                             autoescape=True, trim_blocks=True, lstrip_blocks=True,
                             undefined=jinja2.StrictUndefined)
    env.filters["verdict"] = verdict_mark
    return env.get_template("report.html.j2").render(
        sections=sections, combined=combined, columns=columns, version=__version__,
        flag_mark=FLAG_MARK, flag_legend=FLAG_LEGEND, generated=time.strftime("%Y-%m-%d %H:%M"))


def write_report(runs: list[RunRecord], out_dir: str | Path, *, figures: bool = True,
                 cache_dir: str | None = None, progress: bool = True) -> Path:
    """Render ``runs`` into ``out_dir/index.html`` (written atomically); returns its path."""
    sections = [build_section(run, figures=figures, cache_dir=cache_dir, progress=progress)
                for run in runs]
    every_cell = [c for run in runs for c in run.cells]
    combined = metric_table(every_cell, show_run=True) if len(runs) > 1 else None
    html = render_html(sections, combined, metric_columns(every_cell))
    path = Path(out_dir) / "index.html"
    atomic_write_bytes(path, html.encode("utf-8"))
    return path
