"""Eval Acc@1 interval half-width against the protocol (identities × samples), from stored runs.

    .venv/bin/python benchmarks/protocol_intervals.py CELL_DIR... [--preset mini]
        [--protocols 10x16,20x8,40x4,50x4,50x8,50x16] [--draws 100]

Issue 19.2: how many identities and samples per identity ``mini`` needs for ±10-point
intervals. Each CELL_DIR is one cell of a stored run with many identities (e.g. ``mibench run
... --identities 50``), the folder holding ``images/samples.pt``. The evaluation model of the
run's preset judges every stored image once; then, for each protocol m×k, ``--draws`` times:
m of the cell's identities and k of each one's images, both without replacement, their Eval
Acc@1 and its 95 % percentile-bootstrap half-width over the m identities (the report's method,
:mod:`mibench.metrics.bootstrap`). Prints, per cell and protocol, the image count m·k (what most
attacks' cost grows with), the mean accuracy and the mean and 90th-percentile half-width.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from mibench.cell import CellSetting
from mibench.errors import ConfigError
from mibench.metrics.accuracy import top1_hits
from mibench.metrics.bootstrap import percentile_interval, resample_index
from mibench.metrics.context import EvalContext
from mibench.runconfig import resolve

REPLICATES = 1000


def parse_protocols(text: str) -> list[tuple[int, int]]:
    """``"10x16,40x4"`` → [(10, 16), (40, 4)]."""
    try:
        return [(int(m), int(k)) for m, k in (item.split("x") for item in text.split(","))]
    except ValueError:
        raise ConfigError(f"--protocols: expected IDENTITIESxSAMPLES[,…], got {text!r}") from None


def image_hits(cell: Path, setting: CellSetting) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image top-1 hits of the evaluation model and the images' identities."""
    file = cell / "images" / "samples.pt"
    if not file.is_file():
        raise ConfigError(f"{file} not found: pass a cell folder of a stored run "
                          "(<results>/<run id>/<attack>/<target>)")
    stored = torch.load(file, weights_only=True)
    images, labels = stored["images"].float().div(255), stored["labels"]
    ctx = EvalContext(images, labels, target=torch.nn.Identity(), private=setting.reference)
    return top1_hits(ctx.eval_logits, labels).cpu(), labels


def half_widths(hits: torch.Tensor, labels: torch.Tensor, identities: int, samples: int,
                draws: int, seed: int = 0) -> tuple[float, torch.Tensor]:
    """Mean accuracy and the bootstrap half-width of each of ``draws`` m×k sub-protocols."""
    generator = torch.Generator().manual_seed(seed)
    ids = labels.unique()
    per_id = [hits[labels == i] for i in ids]
    if identities > len(ids) or samples > min(len(h) for h in per_id):
        raise ConfigError(f"protocol {identities}x{samples} needs more than the cell has "
                          f"({len(ids)} identities, {min(len(h) for h in per_id)} samples each)")
    accuracies, widths = [], []
    for draw in range(draws):
        chosen = torch.randperm(len(ids), generator=generator)[:identities]
        values = torch.stack([per_id[i][torch.randperm(len(per_id[i]), generator=generator)
                                        [:samples]].double().mean() for i in chosen.tolist()])
        replicates = values[resample_index(identities, REPLICATES, seed + draw)].mean(dim=1)
        low, high = percentile_interval(replicates, 0.95)
        accuracies.append(values.mean().item())
        widths.append((high - low) / 2)
    return sum(accuracies) / draws, torch.tensor(widths)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cells", nargs="+", type=Path)
    parser.add_argument("--preset", default="mini", choices=["smoke", "mini"])
    parser.add_argument("--protocols", default="10x16,20x8,40x4,50x4,50x8,50x16")
    parser.add_argument("--draws", type=int, default=100)
    args = parser.parse_args()
    protocols = parse_protocols(args.protocols)
    setting = CellSetting.build(resolve(args.preset, flags={"device": "cpu"},
                                        with_attacks=False), show_progress=False)
    print("| cell | protocol | images | Eval Acc@1 | mean ± | 90th-pct ± |")
    print("|---|---|---:|---:|---:|---:|")
    for cell in args.cells:
        hits, labels = image_hits(cell, setting)
        name = f"{cell.parts[-2]} × {cell.parts[-1]} ({cell.parts[-4]})"
        for identities, samples in protocols:
            accuracy, widths = half_widths(hits, labels, identities, samples, args.draws)
            print(f"| {name} | {identities}×{samples} | {identities * samples} | "
                  f"{100 * accuracy:.1f} % | {100 * widths.mean().item():.1f} | "
                  f"{100 * widths.quantile(0.9).item():.1f} |")


if __name__ == "__main__":
    main()
