"""``mibench data prepare NAME --root PATH``: check a dataset folder before a long run.

Checks the layout (everything missing in one :class:`DataError`), then decodes every image the
world would use (at 32 px, threads) and reports the split sizes and each unreadable file, which
a run skips. Nothing is written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from mibench.datasets.real.celeba import find_layout, read_identities
from mibench.datasets.real.config import RealWorldConfig
from mibench.datasets.real.errors import DataError
from mibench.datasets.real.folders import ffhq_images, identity_folders
from mibench.datasets.real.images import CELEBA_CROP, FFHQ_CROP, SQUARE_CROP, Crop, decode_all
from mibench.datasets.real.plan import SplitPlan, flat
from mibench.datasets.real.world import plan_celeba, plan_folders

CHECK_RESOLUTION = 32


@dataclass
class PrepareReport:
    """What ``data prepare`` found: split → (images, identities), unreadable and absent files."""

    name: str
    root: str
    splits: dict[str, tuple[int, int]] = field(default_factory=dict)
    unreadable: list[str] = field(default_factory=list)
    absent: list[str] = field(default_factory=list)


def _whole(name: str, paths: list[Path], crop: Crop) -> list[SplitPlan]:
    return [SplitPlan(name, paths, list(range(len(paths))), crop)]


def _celeba(root: str, config: RealWorldConfig) -> list[SplitPlan]:
    layout = find_layout(root)
    listed = read_identities(layout.identity_file)
    on_disk = {p.name for p in layout.images.iterdir()}
    absent = sorted(set(listed) - on_disk)
    if len(absent) == len(listed):
        raise DataError(f"none of the {len(listed)} images in {layout.identity_file.name} is in "
                        f"{layout.images}; is that CelebA's img_align_celeba folder?")
    plans = plan_celeba(config)
    for plan in plans:
        keep = [i for i, p in enumerate(plan.paths) if p.name in on_disk]
        plan.paths = [plan.paths[i] for i in keep]
        plan.identities = [plan.identities[i] for i in keep]
    plans.append(SplitPlan("absent", [layout.images / n for n in absent], [0] * len(absent),
                           CELEBA_CROP))
    return plans


SOURCES: dict[str, Callable[[str, RealWorldConfig], list[SplitPlan]]] = {
    "celeba": _celeba,
    "ffhq": lambda root, _: _whole("aux-hq", ffhq_images(root), FFHQ_CROP),
    "vggface2": lambda root, _: [flat("identities", {i: files for i, files in enumerate(
        identity_folders(root).values())}, SQUARE_CROP)],
    "folders": lambda root, config: plan_folders(config),
}


def prepare(name: str, config: RealWorldConfig, progress: bool = True) -> PrepareReport:
    """Check the folder ``config.root`` as dataset ``name``; raise :class:`DataError` if it
    cannot make a world, else report what it holds."""
    if name not in SOURCES:
        raise DataError(f"unknown dataset {name!r} for `data prepare`; choose one of "
                        f"{', '.join(SOURCES)}")
    report = PrepareReport(name, config.root)
    for plan in SOURCES[name](config.root, config):
        if plan.name == "absent":
            report.absent = [str(p) for p in plan.paths]
            continue
        _, bad = decode_all(plan.paths, plan.crop, CHECK_RESOLUTION, desc=f"checking {plan.name}",
                            progress=progress)
        report.unreadable += [str(p) for p in bad]
        report.splits[plan.name] = (len(plan) - len(bad), len(set(plan.identities)))
    if report.splits.get("private-train", (1, 1))[0] == 0:
        raise DataError(f"{config.root}: no readable private images; see the files listed by "
                        f"`mibench data prepare {name}`")
    return report


def describe(report: PrepareReport) -> list[str]:
    """The lines ``data prepare`` prints."""
    lines = [f"{report.name} at {report.root}: ok"]
    lines += [f"  {split:<14} {images:>7} images  {ids:>6} identities"
              for split, (images, ids) in report.splits.items()]
    if report.absent:
        lines.append(f"  {len(report.absent)} image(s) listed but absent (skipped): "
                     + ", ".join(Path(p).name for p in report.absent[:5])
                     + (" …" if len(report.absent) > 5 else ""))
    if report.unreadable:
        lines.append(f"  {len(report.unreadable)} unreadable image(s), skipped by runs:")
        lines += [f"    {path}" for path in report.unreadable]
    return lines

