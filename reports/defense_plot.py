"""The accuracy–privacy plot of defended targets (issue 20): the target's natural
(private-test) accuracy on x, an attack's Eval Acc@1 on y; one marker per defense (and
strength, labelled), one colour per attack. Drawn only when a run has defended targets."""

from __future__ import annotations

import itertools
from typing import Any

from matplotlib.figure import Figure

from mibench.plans import NATURAL_ACC, cell_value
from mibench.reports.figures import figure_uri

MARKERS = "osD^vP*Xh<>"
SUCCESS = "eval_acc1"


def defense_of(target: str) -> str:
    """``ir152+mid:beta=0.01`` → ``mid``; an undefended target → ``none``."""
    return target.split("+", 1)[1].split(":")[0] if "+" in target else "none"


def tradeoff_points(cells: list[Any]) -> list[tuple[str, str, float, float]]:
    """(attack, target, natural accuracy, Eval Acc@1) of every finished cell that has both;
    empty when no target of the run is defended."""
    if not any("+" in c.target for c in cells):
        return []
    points = []
    for cell in cells:
        x, y = cell_value(cell, NATURAL_ACC), cell_value(cell, SUCCESS)
        if x is not None and y is not None:
            points.append((cell.attack, cell.target, x, y))
    return points


def tradeoff_uri(cells: list[Any]) -> str | None:
    """The plot as a PNG data URI, or None without defended targets."""
    points = tradeoff_points(cells)
    if not points:
        return None
    attacks = list(dict.fromkeys(p[0] for p in points))
    defenses = list(dict.fromkeys(defense_of(p[1]) for p in points))
    colours = dict(zip(attacks, itertools.cycle([f"C{i}" for i in range(10)])))
    markers = dict(zip(defenses, itertools.cycle(MARKERS)))
    figure = Figure(figsize=(6.4, 4.6))
    ax = figure.subplots()
    for attack, target, x, y in points:
        ax.scatter(x, y, color=colours[attack], marker=markers[defense_of(target)], s=42)
        if ":" in target:
            ax.annotate(target.split(":", 1)[1], (x, y), fontsize=6, xytext=(3, 3),
                        textcoords="offset points")
    for attack in attacks:
        ax.scatter([], [], color=colours[attack], marker="o", label=attack)
    for defense in defenses:
        ax.scatter([], [], color="grey", marker=markers[defense], label=defense)
    ax.set_xlabel("natural accuracy (private test)")
    ax.set_ylabel("attack Eval Acc@1")
    ax.set_title("accuracy–privacy trade-off")
    ax.legend(fontsize=7, ncols=2, loc="best")
    ax.grid(alpha=0.3)
    return figure_uri(figure)
