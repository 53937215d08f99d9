"""The ``mibench`` command line: the parser, one small function per subcommand, and ``main``
(what each subcommand does is :mod:`mibench.cli_commands`)."""

from __future__ import annotations

import argparse
import sys
from typing import Any, Sequence

from mibench import __version__
from mibench.cli_commands import (LISTINGS, cmd_data_build, cmd_data_prepare, cmd_data_show,
                                  cmd_list, cmd_report, cmd_results_export, cmd_results_import,
                                  cmd_run, cmd_zoo_import, cmd_zoo_list, cmd_zoo_train)
from mibench.config import PRESETS
from mibench.errors import MibenchError
from mibench.planning.command import add_plan_parser
from mibench.registry import load_plugin_file

Subparsers = Any  # argparse's _SubParsersAction, which argparse does not export

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
  mibench results export --out parts/         every run's numbers as <run>.db.xz
  mibench plan --experiment table1 --preset paper --gpu rtx4090
                                              estimated GPU-hours and peak memory per cell
"""


def _config_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", choices=sorted(PRESETS),
                        help="size preset (default: mini; or the config file's)")
    parser.add_argument("--config", metavar="FILE.yaml", help="YAML file with config sections")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override one value, e.g. world.resolution=32 (repeatable)")
    parser.add_argument("--cache-dir", help="cache directory (default ~/.cache/mibench)")
    parser.add_argument("--world", help="world (dataset): synth (default), celeba, folders")
    parser.add_argument("--root", help="the real-data world's folder (sets world.root)")


def _add_list(sub: Subparsers) -> None:
    """``mibench list [KIND]``."""
    p = sub.add_parser("list", help="list attacks, targets, datasets, metrics, presets and "
                       "experiments")
    p.add_argument("kind", nargs="?", choices=list(LISTINGS))
    p.set_defaults(func=cmd_list)


def _add_data(sub: Subparsers) -> None:
    """``mibench data build|prepare|show``."""
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


def _add_run(sub: Subparsers) -> None:
    """``mibench run``."""
    p = sub.add_parser("run", help="run attacks against targets",
                       epilog="example: mibench run --attacks gmi --targets arcface,ir152",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    _config_options(p)
    p.add_argument("--experiment", metavar="NAME",
                   help="a paper experiment: table1…table6 or efficiency (`mibench list "
                   "experiments`); it fixes attacks, targets and aux sets; "
                   "--attacks / --targets keep a subset of its cells")
    p.add_argument("--attacks", help="names, comma list or 'all'")
    p.add_argument("--targets", help="names, aliases, patterns (arcface-*) or 'all'")
    p.add_argument("--aux", choices=["similar", "hq", "wild"], help="auxiliary data for attacks")
    p.add_argument("--identities", type=int, help="attack the first N private identities")
    p.add_argument("--samples", type=int, help="samples per identity (default 16)")
    p.add_argument("--seed", type=int, help="seed (default 0)")
    p.add_argument("--seeds", type=int, metavar="N",
                   help="run each cell with N seeds (seed, seed+1, …); reports show mean ± std")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="default: auto")
    p.add_argument("--enrolment", choices=["single", "mean"],
                   help="open-set gallery: one private-train image per identity (single, "
                   "default, the paper's) or the mean of all of them (mean)")
    p.add_argument("--eval-model", help="evaluation model (default densenet-121; or a "
                   "pretrained model, e.g. dlib-resnet)")
    p.add_argument("--eval2-model", help="second, independent evaluation model (default "
                   "resnet-18; 'none' = off)")
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


def _add_zoo(sub: Subparsers) -> None:
    """``mibench zoo train|list|import``."""
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


def _add_report(sub: Subparsers) -> None:
    """``mibench report``."""
    p = sub.add_parser("report", help="render an HTML report of runs (and a leaderboard)",
                       epilog="examples:\n  mibench report                  the latest run -> "
                       "runs/report/index.html\n  mibench report RUN1 RUN2        compare two "
                       "runs in one page\n  mibench report --leaderboard    also write "
                       "./leaderboard.md\n  mibench report --all --leaderboard\n"
                       "                                  every run of the results directory",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="*", metavar="RUN", help="run ids (default: the latest)")
    p.add_argument("--all", action="store_true", dest="all_runs",
                   help="every run of the results directory (a leaderboard split into runs)")
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


def _add_results(sub: Subparsers) -> None:
    """``mibench results export|import``."""
    results = sub.add_parser("results", help="move runs between results directories")
    results_sub = results.add_subparsers(dest="results_command", metavar="ACTION", required=True)
    p = results_sub.add_parser("export", help="write runs as <run>.db.xz (their numbers, not "
                               "their images)")
    p.add_argument("runs", nargs="*", metavar="RUN", help="run ids (default: every run)")
    p.add_argument("--results-dir", default="runs", metavar="DIR",
                   help="results directory (default ./runs)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the exports")
    p.set_defaults(func=cmd_results_export)
    p = results_sub.add_parser("import", help="add exported runs that a results directory "
                               "lacks")
    p.add_argument("files", nargs="+", metavar="FILE.db.xz")
    p.add_argument("--results-dir", default="runs", metavar="DIR",
                   help="results directory (default ./runs)")
    p.set_defaults(func=cmd_results_import)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mibench", description="Benchmark model-inversion attacks on face recognition.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"mibench {__version__}")
    parser.add_argument("--plugin", action="append", default=[], metavar="FILE.py",
                        help="load a plugin file that registers components (repeatable)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in (_add_list, _add_data, _add_run, _add_zoo, _add_report, _add_results,
                add_plan_parser):
        add(sub)
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
