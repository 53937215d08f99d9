"""In which order a pool submits cells: longest first, so no long cell starts last while the
other workers idle (issue 23.4).

Earlier runs at the same preset time a cell's attack, selection and metrics
(:meth:`mibench.store.Store.cell_costs`). A cell with no history is expected to cost more than
any timed one (it may train a prior) and is ranked by :func:`static_cost`, a rule on its spec:
the kind of prior it trains, and whether it is the first cell of the batch to need that prior.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

from mibench.attack import Attack, AttackSpec
from mibench.registry import ATTACKS
from mibench.store import CellKey

# relative cost of training a prior of each kind (README "Paper experiments": at mini the
# diffusion priors take 290–405 s of worker time, the GANs 70–220 s)
DIFFUSION_WEIGHT = 3.0
GAN_WEIGHT = 2.0
OTHER_PRIOR_WEIGHT = 1.0
INVERT_WEIGHT = 0.5  # a cell whose prior exists (or that has none): invert and evaluate only


def prior_weight(spec: AttackSpec) -> float:
    """What training the prior ``spec`` describes costs, relative to other kinds."""
    kind = spec.prior.lower()
    if kind in ("", "none"):
        return 0.0
    if "diffusion" in kind:
        return DIFFUSION_WEIGHT
    if "gan" in kind:
        return GAN_WEIGHT
    return OTHER_PRIOR_WEIGHT


def prior_group(key: CellKey, spec: AttackSpec) -> tuple[str, str, str]:
    """Cells that share one prior: the same attack (an ablation that equals its parent on
    open-set targets shares the parent's prior), aux and, for target-dependent priors, target."""
    owner = spec.same_as_on_open_set or spec.name
    return owner, key.aux, key.target if spec.target_dependent_prior else ""


def static_cost(spec: AttackSpec, trains_prior: bool) -> float:
    """A cell's expected cost without history: its prior's weight when it is the cell that
    trains it, plus inverting and evaluating."""
    return (prior_weight(spec) if trains_prior else 0.0) + INVERT_WEIGHT


def submission_order(keys: Sequence[CellKey],
                     costs: Mapping[tuple[str, str], float]) -> list[CellKey]:
    """``keys`` longest first: cells without history first, by :func:`static_cost` (the first
    cell of each prior group trains it), then timed cells by their cost; ties keep plan order."""
    seen: set[tuple[str, str, str]] = set()
    ranks = {}
    for key in keys:
        cls = ATTACKS.get(key.attack)
        group = prior_group(key, cls.spec)
        trains = cls.prepare is not Attack.prepare and group not in seen
        seen.add(group)
        known = costs.get((key.attack, key.target))
        ranks[key] = (-math.inf if known is None else -known, -static_cost(cls.spec, trains))
    return sorted(keys, key=ranks.__getitem__)
