"""How one cell runs, top to bottom (design.md §4; docs/architecture.md "A cell's life").

A cell is one (attack, target, aux, seed) of a run. :func:`compute_cell` takes it through:

1. the *setting* every cell of a run shares (:class:`CellSetting`: world, private reference);
2. the attack, built from its resolved config (:func:`build_attack`), and its context over the
   target (:func:`attack_setting`: the access view with a fresh query ledger, the aux split);
3. a *seeded prepare* (:func:`seeded_prepare`): priors trained or loaded, its time and queries
   booked as the cell's prepare cost;
4. ``invert`` and ``select``, seeded again and counted per identity;
5. the metrics of every image and of the selected ones (:class:`~mibench.store.Subset`),
   each with its 95 % interval over the attacked identities (:mod:`mibench.metrics.bootstrap`);
6. the :class:`CellOutcome`, handed to whoever records it. Nothing here writes but the cache.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from mibench import precision
from mibench.access import QueryLedger, view_for
from mibench.attack import Attack, AttackContext
from mibench.cache import Cache
from mibench.errors import MibenchError
from mibench.experiments import plan_cells
from mibench.metrics import bootstrap
from mibench.metrics.attribute_reference import AttributeReference
from mibench.metrics.context import EvalContext
from mibench.metrics.evaluate import measure
from mibench.metrics.reference import PrivateReference, ReferenceStore
from mibench.plans import NATURAL_ACC
from mibench.registry import ATTACKS, METRICS
from mibench.runconfig import build_world
from mibench.store import CellKey, Subset
from mibench.targets.enrolment import enrol, run_enrolment
from mibench.targets.zoo import (DEFAULT_EVALUATOR, entry_key, entry_status, evaluator_entry,
                                 get_entry, load_entry, load_evaluator, resolve_device,
                                 second_evaluator_name)
from mibench.world import World


@dataclass
class CellSetting:
    """What every cell of a run shares: the world and the private reference set, built or
    loaded once per process (the driver's for the local executor, each worker's otherwise)."""

    tree: dict[str, Any]
    world: World
    reference: PrivateReference
    cache: Cache
    device: torch.device
    show_progress: bool = True

    @classmethod
    def build(cls, tree: dict[str, Any], *, world: World | None = None,
              show_progress: bool = True) -> CellSetting:
        """Build (or load from the cache) the world, unless given, and the reference."""
        cache = Cache(tree["run"]["cache_dir"] or None)
        device = resolve_device(tree["run"]["device"])
        precision.configure(tree["run"].get("precision", "auto"), device,
                           tree["run"].get("compile", "off"))
        world = world or build_world(tree, cache, progress=show_progress)
        for aux in dict.fromkeys(c.aux for c in plan_cells(tree["run"])):
            world.aux(aux)  # a world without a planned aux split fails here, once
        eval_name = tree["run"].get("eval_model") or DEFAULT_EVALUATOR
        evaluator = load_evaluator(world, cache, tree["preset"], device, show_progress,
                                   name=eval_name)
        eval_key = entry_key(evaluator_entry(eval_name), world, cache, tree["preset"])
        second = second_evaluator_name(tree["run"])
        evaluator2 = second and load_evaluator(world, cache, tree["preset"], device,
                                               show_progress, name=second)
        reference = PrivateReference(world.split("private-train"), evaluator,
                                     store=ReferenceStore(cache, world.fingerprint, eval_key),
                                     eval2_model=evaluator2 or None,
                                     test_split=world.split("private-test"),
                                     attributes=AttributeReference.of_world(
                                         world, cache, tree["preset"], device))
        return cls(tree, world, reference, cache, device, show_progress)


@dataclass
class CellOutcome:
    """What a finished cell hands back to the driver, which alone writes images and store."""

    images: torch.Tensor
    labels: torch.Tensor
    selected: torch.Tensor
    metrics: list[tuple[str, str, float | None, str | None]]
    timings: dict[str, float]
    queries: dict[str, Any]
    warnings: tuple[str, ...] = ()  # for the run, e.g. fewer identities than asked for
    intervals: tuple[tuple, ...] = ()  # rows of the store's intervals table


@dataclass
class CellFailure:
    """A cell that raised: its one-line message and the full traceback."""

    message: str
    traceback: str


@dataclass(frozen=True)
class PrepareCost:
    """Time and queries (per kind) of one ``prepare``."""

    prepare_s: float
    queries: dict[str, int]


def build_attack(name: str, tree: dict[str, Any]) -> Attack:
    """The registered attack ``name`` with its resolved config from ``tree``."""
    attack_cls = ATTACKS.get(name)
    return attack_cls(attack_cls.Config(**tree["attacks"][name]))


def attack_setting(attack: Attack, target_name: str, world: World, cache: Cache, preset: str,
                   device: torch.device, *, aux: str = "similar", seed: int = 0,
                   enrolment: str = "single", enrolment_seed: int = 0,
                   show_progress: bool = True, defenses: dict[str, Any] | None = None
                   ) -> tuple[nn.Module, AttackContext]:
    """The target ``target_name`` (trained and cached on first use; an open-set one enrolled
    under ``enrolment`` with ``enrolment_seed``, the run's ``seed``: one gallery for all the
    run's seeds, as its targets and priors; :mod:`mibench.targets.enrolment`) and the context
    ``attack`` runs in: its access view over the target with a fresh query ledger, the aux
    split, and the cache fingerprints (naming the target, and a ``single`` gallery, when the
    attack's prior depends on it: its logits depend on the gallery); ``defenses`` are the
    run's defense overrides for a defended target."""
    entry = get_entry(target_name, defenses)
    target = load_entry(entry, world, cache, preset, device, show_progress).target
    enrol(target, world.split("private-train"), enrolment, enrolment_seed)
    ledger = QueryLedger()
    aux_fingerprint = fingerprint = f"{world.fingerprint}:{aux}"
    if attack.spec.target_dependent_prior:
        fingerprint += f":{target_name}:{entry_key(entry, world, cache, preset)}"
        if target.kind == "open" and enrolment != "mean":
            fingerprint += f":enrol-{enrolment}-{enrolment_seed}"
    ctx = AttackContext(aux=world.aux(aux), cache=cache, device=device, seed=seed,
                        ledger=ledger, target=view_for(attack.spec.access, target, ledger),
                        preset=preset, data_fingerprint=fingerprint,
                        aux_fingerprint=aux_fingerprint, show_progress=show_progress)
    return target, ctx


def seeded_prepare(attack: Attack, ctx: AttackContext) -> PrepareCost:
    """``attack.prepare`` with the global torch RNG seeded from the cell's seed, and its cost:
    seconds and the queries it made (the ledger is fresh, so all of them)."""
    clock = time.perf_counter()
    torch.manual_seed(ctx.seed)
    attack.prepare(ctx)
    return PrepareCost(time.perf_counter() - clock,
                       {kind: ctx.ledger.total(kind) for kind in ctx.ledger.KINDS})


def run_cell(setting: CellSetting, key: CellKey) -> CellOutcome | CellFailure:
    """:func:`compute_cell`, with an exception turned into a :class:`CellFailure`."""
    try:
        return compute_cell(setting, key)
    except Exception as err:  # a failing cell is recorded and the run goes on
        return CellFailure(f"{type(err).__name__}: {err}".splitlines()[0], traceback.format_exc())


def compute_cell(setting: CellSetting, key: CellKey) -> CellOutcome:
    """One cell: prepare the attack, invert, select, evaluate. Writes nothing but cache entries.

    The global torch RNG is seeded with the cell's seed before ``prepare`` and again before
    ``invert``, so a cell's numbers depend on its key and the cache, not on what ran earlier
    in the process (or on which process ran it).
    """
    tree, run_cfg = setting.tree, setting.tree["run"]
    attack = build_attack(key.attack, tree)
    target, ctx = attack_setting(attack, key.target, setting.world, setting.cache,
                                 tree["preset"], setting.device, aux=key.aux, seed=key.seed,
                                 enrolment=run_enrolment(run_cfg),
                                 enrolment_seed=run_cfg["seed"],
                                 show_progress=setting.show_progress,
                                 defenses=tree.get("defenses"))
    ledger, view = ctx.ledger, ctx.target
    n_ids, warnings = identity_count(run_cfg["identities"], setting.world)
    labels = torch.arange(n_ids).repeat_interleave(run_cfg["samples"])

    prepared = seeded_prepare(attack, ctx)
    timings = {"prepare_s": prepared.prepare_s}

    torch.manual_seed(key.seed)
    clock = time.perf_counter()
    with ledger.scope(labels):
        images = attack.invert(view, labels.to(setting.device), ctx).detach().float().cpu()
        timings["attack_s"] = time.perf_counter() - clock
        _check_output(images, len(labels), key.attack)
        selected = attack.select(view, images, labels, ctx).cpu()
    elapsed = time.perf_counter() - clock
    timings["select_s"] = elapsed - timings["attack_s"]
    timings["attack_s_per_identity"] = elapsed / n_ids
    attack_queries = {kind: ledger.total(kind) - prepared.queries[kind]
                      for kind in ledger.KINDS}

    clock = time.perf_counter()
    rows, intervals, interval_s = [], [], 0.0
    every = EvalContext(images, labels, target=target, private=setting.reference)
    subsets = {Subset.ALL: every, Subset.SELECTED: every.subset(selected)}
    for subset in ctx.progress(subsets, desc=f"metrics {key.attack}×{key.target}", unit="set",
                               leave=False):
        for value in measure(subsets[subset]):
            rows.append((subset, value.name, value.value, value.reason))
            if value.value is not None:
                start = time.perf_counter()
                iv = bootstrap.interval(METRICS.get(value.name), subsets[subset], value)
                intervals.append(bootstrap.to_row(subset, iv))
                interval_s += time.perf_counter() - start
    natural = natural_accuracy(key.target, setting)
    rows += [(subset, NATURAL_ACC, natural, None) for subset in subsets]
    timings["eval_s"] = time.perf_counter() - clock
    timings["intervals_s"] = interval_s
    queries = {"prepare": prepared.queries,
               "per_identity": {k: v / n_ids for k, v in attack_queries.items()},
               "ledger": ledger.to_dict()}
    return CellOutcome(images, labels, selected, rows, timings, queries, warnings,
                       tuple(intervals))


def natural_accuracy(target_name: str, setting: CellSetting) -> float | None:
    """The target's private-test accuracy, as training recorded it (issue 20: a defense's
    natural accuracy next to each attack's success)."""
    entry = get_entry(target_name, setting.tree.get("defenses"))
    return entry_status(entry, setting.world, setting.cache, setting.tree["preset"]).accuracy


def identity_count(requested: int, world: World) -> tuple[int, tuple[str, ...]]:
    """How many private identities a cell attacks: ``requested``, or all the world has, then
    with a warning saying so (issue 23.2)."""
    if requested <= world.num_private:
        return requested, ()
    return world.num_private, (f"--identities {requested}, but the {world.name} world has "
                               f"{world.num_private} private identities: all "
                               f"{world.num_private} were attacked",)


def _check_output(images: torch.Tensor, expected: int, attack: str) -> None:
    if images.ndim != 4 or images.shape[:2] != (expected, 3):
        raise MibenchError(f"attack {attack} returned {tuple(images.shape)} images; it must "
                           f"return {expected}×3×H×W, one per label")
    if images.min() < 0 or images.max() > 1:
        raise MibenchError(f"attack {attack} returned images outside [0,1]; clamp or rescale")
