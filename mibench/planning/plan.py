"""The plan of a resolved run: per prior, per target and per cell (attack × target × aux) the
FLOPs and peak GPU memory, from the configs alone (the world is never built).

Priors shared by cells are counted once (a target-dependent prior once per target), like the
cache would train them. Targets are trained per zoo entry (fine-tuned entries with their
parents), plus the evaluation model: epochs × ⌈training images / batch⌉ SGD steps.

Not counted: metric evaluation (FID, LPIPS, kNN), host memory (e.g. ``aux_images`` resizing the
whole aux split on the CPU), the harness's default selection queries, data loading and
element-wise FLOPs. Hours assume one GPU at the given utilisation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import torch

from mibench.config import Config
from mibench.errors import MibenchError
from mibench.experiments import plan_cells
from mibench.planning import diffusion_workloads, gan_workloads  # noqa: F401  (register)
from mibench.planning.count import Pass, StepCost, on_meta, step_cost
from mibench.planning.workloads import WORKLOADS, Phase, Setting, batches
from mibench.registry import ATTACKS
from mibench.targets.config import TargetConfig
from mibench.targets.models import build_target
from mibench.targets.train import build_objective
from mibench.targets.zoo import (DEFAULT_EVALUATOR, PretrainedEntry, ZooEntry, get_entry,
                                 second_evaluator_name)

SGD_MOMENTUM_SLOTS = 1
WORLD_FIELDS = ("resolution", "private_identities", "private_train_per_identity",
                "aux_identities", "aux_per_identity", "aux_hq_images", "aux_wild_identities",
                "aux_wild_per_identity", "public_identities", "public_per_identity")


class PlanError(MibenchError):
    """The run cannot be planned from its configs."""


@dataclass
class Row:
    """One line of the plan: ``flops`` in total and the peak of its largest step (bytes);
    ``flops`` is None when there is no estimate (``note`` says why)."""

    section: str            # "prior", "target" or "cell"
    name: str
    flops: float | None
    peak_bytes: float
    steps: float = 0.0
    note: str = ""


@dataclass
class Plan:
    preset: str
    rows: list[Row] = field(default_factory=list)
    recipes: dict[str, TargetConfig] = field(default_factory=dict)

    @property
    def total_flops(self) -> float:
        return sum(r.flops for r in self.rows if r.flops is not None)

    def section(self, name: str) -> list[Row]:
        return [r for r in self.rows if r.section == name]


def _world(tree: Mapping[str, Any]) -> Mapping[str, Any]:
    world = tree["world"]
    missing = [f for f in WORLD_FIELDS if f not in world]
    if missing:
        raise PlanError(f"world {tree['run']['world']!r} gives no image counts in its config "
                        f"({', '.join(missing[:3])}, …); plan the synth world instead "
                        "(--set run.world=synth): its paper preset has the paper's split sizes")
    return world


def _aux_images(world: Mapping[str, Any], aux: str) -> int:
    if aux == "hq":
        return world["aux_hq_images"]
    if aux == "wild":
        return world["aux_wild_identities"] * world["aux_wild_per_identity"]
    return world["aux_identities"] * world["aux_per_identity"]


def _measure(phases: list[Phase]) -> tuple[float, float, str]:
    """Total FLOPs, the largest step's peak bytes and which phase it is."""
    costs = [(p, p.cost() if p.steps else None) for p in phases]
    flops = sum(p.steps * c.flops for p, c in costs if c is not None)
    worst, cost = max(((p, c) for p, c in costs if c is not None),
                      key=lambda pc: pc[1].peak_bytes)
    return flops, cost.peak_bytes, worst.label


def _cell_rows(tree: Mapping[str, Any], world: Mapping[str, Any]) -> list[Row]:
    run, preset = tree["run"], tree["preset"]
    rows, priors_seen = [], set()
    for cell in plan_cells(run):
        name = ATTACKS.canonical(cell.attack)
        label = f"{name} × {cell.target}" + ("" if cell.aux == "similar" else f" ({cell.aux})")
        if name not in WORKLOADS:
            rows.append(Row("cell", label, None, 0, note="no estimate (no workload)"))
            continue
        setting = Setting(preset, cell.target, run["identities"], run["samples"],
                          _aux_images(world, cell.aux), world["private_identities"],
                          world["resolution"])
        cfg = ATTACKS.get(name).Config.resolve(None, tree["attacks"][name])
        try:
            phases = WORKLOADS[name](cfg, setting)
            for phase in phases:
                key = None if phase.share is None else (*phase.share, cell.aux)
                if phase.role == "prior" and key not in priors_seen:
                    priors_seen.add(key)
                    flops, peak, _ = _measure([phase])
                    rows.append(Row("prior", f"{phase.label} ({_owner(name, phase, cell)})",
                                    flops, peak, phase.steps, phase.note))
            flops, peak, worst = _measure([p for p in phases if p.role == "attack"])
        except Exception as err:    # an attack's refactor must not hide the other cells: say why
            rows.append(Row("cell", label, None, 0,
                            note=f"no estimate ({type(err).__name__}: {err})"))
            continue
        rows.append(Row("cell", label, flops, peak, note=f"peak in {worst}"))
    return rows


def _owner(attack: str, phase: Phase, cell: Any) -> str:
    per_target = phase.share is not None and cell.target in phase.share
    return f"{attack} @ {cell.target}" if per_target else attack


def _chain(entry: ZooEntry) -> list[ZooEntry]:
    return ([] if entry.parent is None else _chain(entry.parent)) + [entry]


def _target_rows(tree: Mapping[str, Any], world: Mapping[str, Any],
                 plan: Plan) -> list[Row]:
    names = list(dict.fromkeys(c.target for c in plan_cells(tree["run"])))
    names.append(tree["run"].get("eval_model") or DEFAULT_EVALUATOR)
    names.extend(n for n in [second_evaluator_name(tree["run"])] if n)
    entries: dict[str, ZooEntry] = {}
    rows = []
    for name in names:
        entry = get_entry(name)
        if isinstance(entry, PretrainedEntry) or entry.imported:
            how = "pretrained" if isinstance(entry, PretrainedEntry) else "imported"
            rows.append(Row("target", entry.name, 0.0, 0, note=f"{how}: nothing to train"))
            continue
        entries.update((e.name, e) for e in _chain(entry))
    for entry in entries.values():
        cfg = entry.resolve(tree["preset"])
        plan.recipes[entry.name] = cfg
        images, classes = _training_split(entry, cfg, world)
        cost = _target_step(cfg, world["private_identities"], classes, world["resolution"])
        steps = cfg.epochs * batches(images, cfg.batch_size)
        rows.append(Row("target", entry.name, steps * cost.flops, cost.peak_bytes, steps,
                        note=f"{images} images"))
    return rows


def _training_split(entry: ZooEntry, cfg: TargetConfig,
                    world: Mapping[str, Any]) -> tuple[int, int]:
    """(images, identities) the entry trains on: open-set pre-training on public, closed-set
    and fine-tuning on private-train."""
    if cfg.kind == "open" and entry.parent is None:
        return world["public_identities"] * world["public_per_identity"], \
            world["public_identities"]
    return world["private_identities"] * world["private_train_per_identity"], \
        world["private_identities"]


def _target_step(cfg: TargetConfig, num_classes: int, train_classes: int,
                 side: int) -> StepCost:
    target = on_meta(lambda: build_target(cfg, num_classes))
    objective = on_meta(lambda: build_objective(cfg, train_classes))

    def run() -> torch.Tensor:
        images = torch.rand(cfg.batch_size, 3, side, side)
        if cfg.loss == "triplet":       # its mining is data-dependent: count the embedding
            return target.embed(target.preprocess(images)).sum()
        return objective(target, images, torch.randint(train_classes, (cfg.batch_size,)))

    slots = SGD_MOMENTUM_SLOTS if cfg.momentum else 0
    return step_cost([Pass(run)], trained=[(target, slots), (objective, slots)])


def build_plan(tree: Mapping[str, Any]) -> Plan:
    """The plan of a resolved configuration tree (``mibench.runconfig.resolve``)."""
    world = _world(tree)
    plan = Plan(tree["preset"])
    cells = _cell_rows(tree, world)
    plan.rows = [r for r in cells if r.section == "prior"] + _target_rows(tree, world, plan) \
        + [r for r in cells if r.section == "cell"]
    return plan
