"""What the ``mibench`` subcommands do (the parser is :mod:`mibench.cli`)."""

from __future__ import annotations

import argparse
import sys
from typing import Any, Callable

import yaml

from mibench.cache import Cache
from mibench.config import PRESETS
from mibench.errors import MibenchError
from mibench.registry import ATTACKS, DATASETS, DEFENSES, METRICS, TARGETS, Registry
from mibench.runconfig import build_world, resolve, world_summary
from mibench.world import WorldSummary


def _describe(obj: Any) -> str:
    text = getattr(obj, "description", None) or (obj.__doc__ or "").strip()
    return text.splitlines()[0] if text else ""


def _attack_row(name: str, attack: Any) -> list[str]:
    spec = getattr(attack, "spec", None)
    if spec is None:
        return [name, _describe(attack), "", ""]
    return [name, spec.title, f"{spec.paper} ({spec.year})", spec.access]


def _plain_rows(registry: Registry) -> list[list[str]]:
    return [[name, _describe(obj)] for name, obj in registry.items()]


LISTINGS: dict[str, tuple[list[str], Callable[[], list[list[str]]]]] = {
    "attacks": (["name", "title", "paper", "access"],
                lambda: [_attack_row(n, a) for n, a in ATTACKS.items()]),
    "targets": (["name", "description"], lambda: _plain_rows(TARGETS)),
    "datasets": (["name", "description"], lambda: _plain_rows(DATASETS)),
    "metrics": (["name", "description"], lambda: _plain_rows(METRICS)),
    "presets": (["name", "purpose"], lambda: [[k, v] for k, v in PRESETS.items()]),
    "experiments": (["name", "title", "cells", "plan"], lambda: _experiment_rows()),
    "defenses": (["name", "paper", "swept", "defaults"], lambda: _defense_rows()),
}


def _defense_rows() -> list[list[str]]:
    return [[name, d.paper, f"{d.strength} {list(d.sweep)}",
             ", ".join(f"{k}={v}" for k, v in d.Config().to_dict().items())]
            for name, d in DEFENSES.items()]


def _experiment_rows() -> list[list[str]]:
    from mibench.experiments import EXPERIMENTS

    return [[name, e.title, str(len(e.cells())), e.summary] for name, e in EXPERIMENTS.items()]


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip()
             for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def cmd_list(args: argparse.Namespace) -> int:
    kinds = [args.kind] if args.kind else list(LISTINGS)
    for i, kind in enumerate(kinds):
        header, rows = LISTINGS[kind][0], LISTINGS[kind][1]()
        print(f"{'' if i == 0 else chr(10)}{kind}:")
        print(_table(header, rows) if rows else "  (none registered yet)")
    return 0


def _absolute(path: str | None) -> str | None:
    """``--root`` as an absolute path, so a stored run finds its data from any directory."""
    from pathlib import Path

    return str(Path(path).expanduser().resolve()) if path else None


def _resolved(args: argparse.Namespace, with_attacks: bool = True,
              **flags: Any) -> dict[str, Any]:
    flags.setdefault("world", getattr(args, "world", None))
    return resolve(args.preset, args.config, args.set, flags,
                   world_flags={"root": _absolute(getattr(args, "root", None))},
                   with_attacks=with_attacks)


def cmd_data_build(args: argparse.Namespace) -> int:
    world = _world_context(args)[0]
    rows = [[name, str(len(s)), str(int(s.identities.unique().numel())), f"{s.resolution}px"]
            for name, s in world.splits.items()]
    print(f"world {world.name} {world.fingerprint}")
    print(_table(["split", "images", "identities", "resolution"], rows))
    return 0


def cmd_data_prepare(args: argparse.Namespace) -> int:
    from mibench.datasets.real.config import RealWorldConfig
    from mibench.datasets.real.prepare import describe, prepare

    world = args.name if args.name in ("celeba", "folders") else "celeba"
    tree = resolve(args.preset or "paper", args.config, args.set, {"world": world},
                   world_flags={"root": _absolute(args.root)})
    report = prepare(args.name, RealWorldConfig(**tree["world"]), progress=not args.quiet)
    print("\n".join(describe(report)))
    return 0


def cmd_data_show(args: argparse.Namespace) -> int:
    from mibench.datasets.preview import save_preview

    world = _world_context(args)[0]
    splits = args.splits.split(",") if args.splits else None
    save_preview(world, args.out, splits=splits, identities=args.identities, images=args.images)
    print(f"wrote {args.out}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from mibench.executors import choose_executor
    from mibench.harness import Harness, summary_table
    from mibench.store import CellStatus, Store

    flags = {k: getattr(args, k) for k in ("experiment", "attacks", "targets", "aux",
                                           "identities", "samples", "seed", "seeds", "device",
                                           "results_dir", "cache_dir", "eval_model",
                                           "eval2_model", "enrolment", "executor", "address",
                                           "workers")}
    run_id = None
    if args.resume:
        store = Store(args.results_dir or "runs")
        ids = store.run_ids()
        if not ids:
            raise MibenchError(f"nothing to resume in {store.root}; start a run without --resume")
        run_id = ids[-1] if args.resume == "latest" else args.resume
        tree = store.run(run_id)["config"]
        tree["run"].update({k: flags[k] for k in ("executor", "address", "workers")
                            if flags[k] is not None and flags[k] != ""})
        print(f"resuming run {run_id} with its stored configuration")
    else:
        tree = _resolved(args, **flags)
    if args.dry_run:
        print(yaml.safe_dump(tree, sort_keys=False).rstrip())
        print(_recipes_comment(tree))
        return 0
    executor = choose_executor(tree["run"], args.plugin)
    harness = Harness(tree, show_progress=not args.quiet)
    run_id = harness.start(run_id, command=" ".join(["mibench", *sys.argv[1:]]))
    plan = tree["run"].get("experiment") or f"{len(harness.attacks)} attack(s) × " \
        f"{len(harness.targets)} target(s)"
    print(f"run {run_id}: {plan}, {len(harness.cells(run_id))} cell(s), preset "
          f"{tree['preset']}, device {harness.device}")
    results = harness.execute(run_id, executor)
    print(summary_table(results))
    failed = [r for r in results if r.status != CellStatus.DONE]
    print(f"run {run_id}: {len(results) - len(failed)} cell(s) done, {len(failed)} failed; "
          f"results in {harness.store.root} (`mibench report {run_id}`)")
    return 1 if failed else 0


def _recipes_comment(tree: dict[str, Any]) -> str:
    """The training recipes of the run's targets and evaluation model, as YAML comments: the
    output still parses as (and can be passed back as ``--config``) the resolved tree alone."""
    from mibench.targets.zoo import (DEFAULT_EVALUATOR, evaluator_entry, get_entry, recipe,
                                     second_evaluator_name)

    preset, run = tree["preset"], tree["run"]
    evaluator = evaluator_entry(run.get("eval_model") or DEFAULT_EVALUATOR)
    recipes = {"target_recipes": {name: recipe(get_entry(name, tree.get("defenses")), preset)
                                  for name in TARGETS.expand(run["targets"])},
               "eval_model_recipe": {evaluator.name: recipe(evaluator, preset)}}
    second = second_evaluator_name(run)
    if second:
        recipes["eval2_model_recipe"] = {second: recipe(evaluator_entry(second), preset)}
    text = yaml.safe_dump(recipes, sort_keys=False).rstrip()
    header = (f"training recipes at preset {preset} (what `mibench zoo train` trains; "
              "informational, not a config section):")
    return "\n".join(f"# {line}" for line in [header, *text.splitlines()])


def cmd_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mibench.cache import atomic_write_bytes
    from mibench.reports.leaderboard import leaderboard_markdown
    from mibench.reports.render import write_report
    from mibench.reports.runs import load_run, open_store, pick_run_ids

    results_dir = Path(args.results_dir)
    store = open_store(results_dir)
    if args.list:
        rows = []
        for run_id in store.run_ids():
            run = load_run(store, run_id)
            done = sum(c.done for c in run.cells)
            rows.append([run_id, run.date, run.preset, ",".join(run.attacks),
                         ",".join(run.targets), f"{done}/{len(run.cells)}"])
        print(_table(["run", "created", "preset", "attacks", "targets", "cells done"], rows)
              if rows else f"no runs in {results_dir}")
        return 0
    chosen = pick_run_ids(store, args.runs, every=args.all_runs)
    runs = [load_run(store, run_id) for run_id in chosen]
    path = write_report(runs, args.out or results_dir / "report", figures=not args.no_figures,
                        cache_dir=args.cache_dir, progress=not args.quiet)
    print(f"wrote {path} ({', '.join(r.run_id for r in runs)})")
    if args.leaderboard:
        board = Path(args.leaderboard_out or "leaderboard.md")
        atomic_write_bytes(board, leaderboard_markdown(runs).encode("utf-8"))
        print(f"wrote {board}")
    return 0


def cmd_results_export(args: argparse.Namespace) -> int:
    from mibench.archive import export_run
    from mibench.reports.runs import open_store

    store = open_store(args.results_dir)
    for run_id in args.runs or store.run_ids():
        print(f"wrote {export_run(store, run_id, args.out)}")
    return 0


def cmd_results_import(args: argparse.Namespace) -> int:
    from mibench.archive import import_runs
    from mibench.store import Store

    store = Store(args.results_dir)
    for path in args.files:
        added = import_runs(store, path)
        print(f"{path}: " + (f"added {', '.join(added)}" if added else "nothing new"))
    return 0


def _world_context(args: argparse.Namespace) -> tuple[Any, Cache, str]:
    """(world, cache, preset) of a command that works in a world (data, zoo)."""
    tree = _resolved(args, cache_dir=args.cache_dir)
    cache = Cache(tree["run"]["cache_dir"] or None)
    world = build_world(tree, cache, progress=not getattr(args, "quiet", False))
    return world, cache, tree["preset"]


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def cmd_zoo_train(args: argparse.Namespace) -> int:
    from mibench.targets.zoo import awaits_import, expand_names, get_entry, load_entry

    names = expand_names(args.names)
    world, cache, preset = _world_context(args)
    defenses = _resolved(args, with_attacks=False, cache_dir=args.cache_dir).get("defenses")
    rows = []
    for name in names:
        if len(names) > 1 and awaits_import(get_entry(name, defenses), cache, preset):
            rows.append([name, "closed", "-", "-", f"not imported (zoo import FILE --as {name})"])
            continue
        model = load_entry(get_entry(name, defenses), world, cache, preset, args.device,
                           progress=not args.quiet)
        seconds = model.metrics.get("wall_time_s")
        rows.append([name, model.target.kind, _percent(model.metrics.get("val_accuracy")),
                     "-" if seconds is None else f"{seconds:.0f}s", model.source])
    print(_table(["name", "kind", "private-test acc", "train time", "source"], rows))
    return 0


def _world_identity(args: argparse.Namespace) -> tuple[WorldSummary, Cache, str]:
    """(world summary, cache, preset) of a command that needs the world's identity only: the
    world is not rendered or decoded (:func:`mibench.runconfig.world_summary`)."""
    tree = _resolved(args, with_attacks=False, cache_dir=args.cache_dir)
    cache = Cache(tree["run"]["cache_dir"] or None)
    return world_summary(tree, cache, progress=not args.quiet), cache, tree["preset"]


def _status_row(name: str, status: Any, recipe: str) -> list[str]:
    kind = status.kind if status.role == "target" else f"{status.kind} (evaluation)"
    seconds = "-" if status.train_seconds is None else f"{status.train_seconds:.0f}s"
    return [name, kind, f"{status.params / 1e6:.2f}M", f"{status.resolution}px",
            _percent(status.accuracy), seconds, status.state, recipe]


def cmd_zoo_list(args: argparse.Namespace) -> int:
    from mibench.targets.defended import defended_names
    from mibench.targets.zoo import (EVALUATORS, entry_state, entry_status, get_entry,
                                    recipe_summary)

    world, cache, preset = _world_identity(args)
    defended = defended_names()
    rows = []
    for name in [*TARGETS.names(), *EVALUATORS.names()]:
        entry = get_entry(name)
        rows.append(_status_row(name, entry_status(entry, world, cache, preset),
                                recipe_summary(entry, preset)))
        for variant in (v for v in defended if v.startswith(f"{name}+")):
            defended_entry = get_entry(variant)
            if entry_state(defended_entry, world, cache, preset) != "not trained":
                status = entry_status(defended_entry, world, cache, preset)
                rows.append(_status_row(f"  {variant}", status, "defended"))  # once trained
    print(f"preset {preset}, world {world.name} {world.fingerprint}; accuracy on private-test "
          "(open set: identification against the enrolled gallery)")
    print(_table(["name", "kind", "params", "resolution", "accuracy", "train time", "state",
                  "recipe"], rows))
    return 0


def cmd_zoo_import(args: argparse.Namespace) -> int:
    from mibench.config import parse_assignment
    from mibench.targets.zoo import import_weights

    overrides = {}
    for text in args.arch:
        path, value = parse_assignment(text)
        overrides[".".join(path)] = value
    world, cache, preset = _world_context(args)
    path = import_weights(args.file, args.name, world, cache, preset, overrides)
    print(f"installed {args.file} as {args.name} for preset {preset}: {path}")
    return 0
