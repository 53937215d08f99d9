"""The ``mibench`` command line."""

from __future__ import annotations

import argparse
import sys
from typing import Any, Callable, Sequence

import yaml

from mibench import __version__
from mibench.cache import Cache
from mibench.config import PRESETS
from mibench.errors import MibenchError
from mibench.registry import ATTACKS, DATASETS, METRICS, TARGETS, Registry, load_plugin_file
from mibench.runconfig import build_world, resolve

EXAMPLES = """\
examples:
  mibench list attacks                        what can be run, with paper, year and access
  mibench data build --preset mini            render the synthetic world into the cache
  mibench data prepare celeba --root ~/celeba check a CelebA folder before a real-data run
  mibench data show --out world.png           a grid of identities × images per split
  mibench run --experiment table1 --seeds 3   a paper table, three seeds, mean ± std
  mibench run --attacks all --targets arcface --dry-run
                                              print the fully resolved configuration
  mibench run --preset smoke --set run.seed=3 --set world.resolution=32 --dry-run
  mibench --plugin my_attack.py list attacks  load a plugin file, then list
  mibench zoo train arcface-* --preset mini   train (or load from the cache) zoo models
  mibench zoo import ir152.tar --as ir152     install your own weights for a zoo name
"""

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
}


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


def _resolved(args: argparse.Namespace, **flags: Any) -> dict[str, Any]:
    flags.setdefault("world", getattr(args, "world", None))
    return resolve(args.preset, args.config, args.set, flags,
                   world_flags={"root": _absolute(getattr(args, "root", None))})


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
                                           "executor", "address", "workers")}
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
    runs = [load_run(store, run_id) for run_id in pick_run_ids(store, args.runs)]
    path = write_report(runs, args.out or results_dir / "report", figures=not args.no_figures,
                        cache_dir=args.cache_dir, progress=not args.quiet)
    print(f"wrote {path} ({', '.join(r.run_id for r in runs)})")
    if args.leaderboard:
        board = Path(args.leaderboard_out or "leaderboard.md")
        atomic_write_bytes(board, leaderboard_markdown(runs).encode("utf-8"))
        print(f"wrote {board}")
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
    from mibench.targets.zoo import expand_names, get_entry, load_entry

    names = expand_names(args.names)
    world, cache, preset = _world_context(args)
    rows = []
    for name in names:
        model = load_entry(get_entry(name), world, cache, preset, args.device,
                           progress=not args.quiet)
        seconds = model.metrics.get("wall_time_s")
        rows.append([name, model.target.kind, _percent(model.metrics.get("val_accuracy")),
                     "-" if seconds is None else f"{seconds:.0f}s", model.source])
    print(_table(["name", "kind", "private-test acc", "train time", "source"], rows))
    return 0


def cmd_zoo_list(args: argparse.Namespace) -> int:
    from mibench.targets.zoo import EVALUATORS, entry_status, get_entry

    world, cache, preset = _world_context(args)
    rows = []
    for name in [*TARGETS.names(), *EVALUATORS.names()]:
        status = entry_status(get_entry(name), world, cache, preset)
        kind = status.kind if status.role == "target" else f"{status.kind} (evaluation)"
        seconds = "-" if status.train_seconds is None else f"{status.train_seconds:.0f}s"
        rows.append([name, kind, f"{status.params / 1e6:.2f}M", f"{status.resolution}px",
                     _percent(status.accuracy), seconds, status.state])
    print(f"preset {preset}, world {world.name} {world.fingerprint}; accuracy on private-test "
          "(open set: identification against the enrolled gallery)")
    print(_table(["name", "kind", "params", "resolution", "accuracy", "train time", "state"],
                 rows))
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


def _config_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", choices=sorted(PRESETS),
                        help="size preset (default: mini; or the config file's)")
    parser.add_argument("--config", metavar="FILE.yaml", help="YAML file with config sections")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override one value, e.g. world.resolution=32 (repeatable)")
    parser.add_argument("--cache-dir", help="cache directory (default ~/.cache/mibench)")
    parser.add_argument("--world", help="world (dataset): synth (default), celeba, folders")
    parser.add_argument("--root", help="the real-data world's folder (sets world.root)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mibench", description="Benchmark model-inversion attacks on face recognition.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"mibench {__version__}")
    parser.add_argument("--plugin", action="append", default=[], metavar="FILE.py",
                        help="load a plugin file that registers components (repeatable)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("list", help="list attacks, targets, datasets, metrics, presets and "
                       "experiments")
    p.add_argument("kind", nargs="?", choices=list(LISTINGS))
    p.set_defaults(func=cmd_list)

    data = sub.add_parser("data", help="build or look at a world")
    data_sub = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    p = data_sub.add_parser("build", help="materialise the world into the cache")
    _config_options(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_data_build)
    p = data_sub.add_parser("prepare", help="check a dataset folder (layout, unreadable images)",
                            epilog="example: mibench data prepare celeba --root ~/data/celeba",
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", choices=["celeba", "ffhq", "vggface2", "folders"])
    p.add_argument("--root", required=True, help="the dataset folder")
    p.add_argument("--preset", choices=sorted(PRESETS),
                   help="check what this preset uses (default: paper, everything)")
    p.add_argument("--config", metavar="FILE.yaml", help="YAML file with config sections")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a world value, e.g. world.split=gmi (repeatable)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_data_prepare)
    p = data_sub.add_parser("show", help="write a PNG grid: identities × images per split")
    _config_options(p)
    p.add_argument("--out", default="world.png", help="output PNG (default world.png)")
    p.add_argument("--identities", type=int, default=6, help="rows per panel (default 6)")
    p.add_argument("--images", type=int, default=8, help="columns per panel (default 8)")
    p.add_argument("--splits", help="comma list of splits (default: all)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_data_show)

    p = sub.add_parser("run", help="run attacks against targets",
                       epilog="example: mibench run --attacks gmi --targets arcface,ir152",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    _config_options(p)
    p.add_argument("--experiment", metavar="NAME",
                   help="a paper experiment: table1…table6 or efficiency (`mibench list "
                   "experiments`); it fixes attacks, targets and aux sets")
    p.add_argument("--attacks", help="names, comma list or 'all'")
    p.add_argument("--targets", help="names, aliases, patterns (arcface-*) or 'all'")
    p.add_argument("--aux", choices=["similar", "hq", "wild"], help="auxiliary data for attacks")
    p.add_argument("--identities", type=int, help="attack the first N private identities")
    p.add_argument("--samples", type=int, help="samples per identity (default 16)")
    p.add_argument("--seed", type=int, help="seed (default 0)")
    p.add_argument("--seeds", type=int, metavar="N",
                   help="run each cell with N seeds (seed, seed+1, …); reports show mean ± std")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="default: auto")
    p.add_argument("--eval-model", help="evaluation model (default densenet-121; or a "
                   "pretrained model, e.g. dlib-resnet)")
    p.add_argument("--results-dir", help="results directory (default ./runs)")
    p.add_argument("--executor", choices=["local", "ray"],
                   help="local (default): cells one after another here; ray: each cell, target "
                   "and prior a Ray task (pip install 'mibench[ray]')")
    p.add_argument("--address", metavar="auto|HOST:PORT",
                   help="Ray cluster to join (default: start a private one on this machine)")
    p.add_argument("--workers", type=int, metavar="N",
                   help="local executor on CPU: cells run at once in N processes (default 0 = "
                   "auto: one per core, at most 4; smoke: 1)")
    p.add_argument("--resume", nargs="?", const="latest", metavar="RUN",
                   help="continue an interrupted run (default: the latest in --results-dir)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    p.set_defaults(func=cmd_run)

    zoo = sub.add_parser("zoo", help="train, list or import targets and evaluation models")
    zoo_sub = zoo.add_subparsers(dest="zoo_command", metavar="ACTION", required=True)
    p = zoo_sub.add_parser("train", help="train zoo models (or load them from the cache)")
    _config_options(p)
    p.add_argument("names", help="names, aliases, patterns (arcface-*) or 'all' (every target "
                   "and evaluation model)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="default: auto")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_zoo_train)
    p = zoo_sub.add_parser("list", help="every zoo model: kind, size, accuracy, cached or not")
    _config_options(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_zoo_list)
    p = zoo_sub.add_parser("import", help="install your checkpoint for a zoo name (it then "
                           "takes precedence over training at that preset)",
                           epilog="formats: KEDMI/GMI/PLG-MI .tar, MIA toolbox v2, PPA, "
                           "insightface backbone.pth, bare state dicts, mibench checkpoints",
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    _config_options(p)
    p.add_argument("file", help="the checkpoint file")
    p.add_argument("--as", dest="name", required=True, help="zoo name, e.g. ir152")
    p.add_argument("--arch", action="append", default=[], metavar="KEY=VALUE",
                   help="architecture field where the file differs from the preset's, e.g. "
                   "width=1.0 resolution=64 feature_dim=512 (repeatable)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_zoo_import)

    p = sub.add_parser("report", help="render an HTML report of runs (and a leaderboard)",
                       epilog="examples:\n  mibench report                  the latest run -> "
                       "runs/report/index.html\n  mibench report RUN1 RUN2        compare two "
                       "runs in one page\n  mibench report --leaderboard    also write "
                       "./leaderboard.md",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="*", metavar="RUN", help="run ids (default: the latest)")
    p.add_argument("--results-dir", default="runs", metavar="DIR",
                   help="results directory (default ./runs)")
    p.add_argument("--out", metavar="DIR", help="output directory for index.html (default "
                   "<results-dir>/report)")
    p.add_argument("--leaderboard", action="store_true", help="also write leaderboard.md")
    p.add_argument("--leaderboard-out", metavar="PATH",
                   help="where --leaderboard writes (default ./leaderboard.md)")
    p.add_argument("--list", action="store_true", help="list the stored runs and exit")
    p.add_argument("--no-figures", action="store_true",
                   help="skip what needs the private data and evaluation model (private "
                   "images, heatmaps, t-SNE)")
    p.add_argument("--cache-dir", metavar="DIR",
                   help="cache holding the run's world and evaluation model "
                   "(default: the one the run used)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_report)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        for path in args.plugin:
            load_plugin_file(path)
        return args.func(args)
    except MibenchError as err:
        print(f"mibench: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mibench: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
