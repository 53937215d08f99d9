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
from mibench.runconfig import resolve

EXAMPLES = """\
examples:
  mibench list attacks                        what can be run, with paper, year and access
  mibench data build --preset mini            render the synthetic world into the cache
  mibench data show --out world.png           a grid of identities × images per split
  mibench run --attacks all --targets arcface --dry-run
                                              print the fully resolved configuration
  mibench run --preset smoke --set run.seed=3 --set world.resolution=32 --dry-run
  mibench --plugin my_attack.py list attacks  load a plugin file, then list
"""

NOT_BUILT = ("the benchmark harness (running cells, metrics, results store) is not built yet; "
             "`mibench run --dry-run` prints the resolved configuration meanwhile")
REPORT_NOT_BUILT = ("HTML reports are not built yet (they need the results store of "
                    "`mibench run`, which is not built yet either)")


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
}


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


def _resolved(args: argparse.Namespace, **flags: Any) -> dict[str, Any]:
    return resolve(args.preset, args.config, args.set, flags)


def _build_world(args: argparse.Namespace) -> Any:
    tree = _resolved(args, cache_dir=args.cache_dir)
    dataset = DATASETS.get(tree["run"]["world"])
    config = dataset.Config(**tree["world"])
    cache = Cache(tree["run"]["cache_dir"] or None)
    return dataset.build(config, cache, progress=not args.quiet)


def cmd_data_build(args: argparse.Namespace) -> int:
    world = _build_world(args)
    rows = [[name, str(len(s)), str(int(s.identities.unique().numel())), f"{s.resolution}px"]
            for name, s in world.splits.items()]
    print(f"world {world.name} {world.fingerprint}")
    print(_table(["split", "images", "identities", "resolution"], rows))
    return 0


def cmd_data_show(args: argparse.Namespace) -> int:
    from mibench.datasets.preview import save_preview

    world = _build_world(args)
    splits = args.splits.split(",") if args.splits else None
    save_preview(world, args.out, splits=splits, identities=args.identities, images=args.images)
    print(f"wrote {args.out}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    flags = {k: getattr(args, k) for k in ("attacks", "targets", "aux", "identities", "samples",
                                           "seed", "device", "results_dir", "cache_dir")}
    tree = _resolved(args, **flags)
    if TARGETS.names():
        TARGETS.expand(tree["run"]["targets"])
    if args.dry_run:
        print(yaml.safe_dump(tree, sort_keys=False).rstrip())
        return 0
    raise MibenchError(NOT_BUILT)


def cmd_report(args: argparse.Namespace) -> int:
    raise MibenchError(REPORT_NOT_BUILT)


def _config_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", choices=sorted(PRESETS),
                        help="size preset (default: mini; or the config file's)")
    parser.add_argument("--config", metavar="FILE.yaml", help="YAML file with config sections")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override one value, e.g. world.resolution=32 (repeatable)")
    parser.add_argument("--cache-dir", help="cache directory (default ~/.cache/mibench)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mibench", description="Benchmark model-inversion attacks on face recognition.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"mibench {__version__}")
    parser.add_argument("--plugin", action="append", default=[], metavar="FILE.py",
                        help="load a plugin file that registers components (repeatable)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("list", help="list attacks, targets, datasets, metrics and presets")
    p.add_argument("kind", nargs="?", choices=list(LISTINGS))
    p.set_defaults(func=cmd_list)

    data = sub.add_parser("data", help="build or look at a world")
    data_sub = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    p = data_sub.add_parser("build", help="materialise the world into the cache")
    _config_options(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_data_build)
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
    p.add_argument("--attacks", help="names, comma list or 'all'")
    p.add_argument("--targets", help="names, aliases, patterns (arcface-*) or 'all'")
    p.add_argument("--aux", choices=["similar", "hq", "wild"], help="auxiliary data for attacks")
    p.add_argument("--identities", type=int, help="attack the first N private identities")
    p.add_argument("--samples", type=int, help="samples per identity (default 16)")
    p.add_argument("--seed", type=int, help="seed (default 0)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="default: auto")
    p.add_argument("--results-dir", help="results directory (default ./runs)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run")
    p.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("report", help="render an HTML report of runs")
    p.add_argument("runs", nargs="*", help="run ids (default: the latest)")
    p.add_argument("--out", help="output directory")
    p.add_argument("--leaderboard", action="store_true", help="also write leaderboard.md")
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
