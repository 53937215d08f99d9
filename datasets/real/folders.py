"""FFHQ (images only) and identity-per-folder trees (VGGFace2, FaceScrub, your own).

FFHQ: every image below the root (flat, or the official ``00000/``… subfolders), one identity
each, unlabelled (``aux-hq``). An identity tree: one sub-folder per identity holding its images
(VGGFace2's ``n000002/0001_01.jpg``); identities and files are in *natural* order, so folders
named by numbers sort numerically ("2" before "10", unlike ``ImageFolder``, anchors.md §1.1).
"""

from __future__ import annotations

from pathlib import Path

from mibench.datasets.real.errors import DataError
from mibench.datasets.real.images import image_files, natural_key


def existing_folder(root: str | Path, what: str, option: str) -> Path:
    path = Path(root).expanduser()
    if not path.is_dir():
        raise DataError(f"{what} folder {path} does not exist; check {option}")
    return path


def ffhq_images(root: str | Path, option: str = "--root") -> list[Path]:
    """Every image below an FFHQ root, in natural order."""
    folder = existing_folder(root, "FFHQ", option)
    files = image_files(folder, recursive=True)
    if not files:
        raise DataError(f"FFHQ folder {folder} holds no images (.jpg/.png); point {option} at "
                        "the folder of the FFHQ thumbnails or images")
    return files


def identity_folders(root: str | Path, option: str = "--root") -> dict[str, list[Path]]:
    """Identity name → its image files, both in natural order; empty folders are left out."""
    folder = existing_folder(root, "identity", option)
    subdirs = sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")),
                     key=lambda p: natural_key(p.name))
    tree = {sub.name: files for sub in subdirs if (files := image_files(sub))}
    if not tree:
        loose = "it holds loose images: put each identity's images in a folder of its own" \
            if image_files(folder) else "it has no sub-folder with images"
        raise DataError(f"{folder} is not an identity-per-folder tree ({loose}); expected "
                        "ROOT/<identity>/<image>.jpg")
    return tree
