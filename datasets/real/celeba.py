"""CelebA (``img_align_celeba`` + ``identity_CelebA.txt``): layout, identities and splits.

Two splits (anchors.md §1.1, attacks.md §8.2):

* ``fgmia`` (default), FGMIA's ``prepare_celeba.py``: identities sorted by image count (ties by
  identity id), the top 2·N alternate between Mini1 (even ranks → ``aux``) and Mini2 (odd ranks
  → private, class = rank order), N = ``private_identities`` (1,000 in the paper); the rest is
  ``public``. Computed from the identity file, nothing shipped.
* ``gmi``, the GMI/KEDMI/PLG-MI lists the user downloaded (``split_dir``):
  ``private_train.txt``, ``private_test.txt`` (``<file> <label>`` lines) and ``public.txt``
  (``<file>`` lines, a label is ignored); KEDMI's ``celeba_trainset.txt``, ``celeba_testset.txt``
  and ``celeba_ganset.txt`` are accepted under those names. ``public`` is also the ``aux`` split,
  as the GAN prior's data in that protocol.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from mibench.datasets.real.errors import DataError

IMAGES_DIR = "img_align_celeba"
IDENTITY_FILE = "identity_CelebA.txt"
GMI_LISTS = {"private-train": ("private_train.txt", "celeba_trainset.txt"),
             "private-test": ("private_test.txt", "celeba_testset.txt"),
             "public": ("public.txt", "celeba_ganset.txt")}
LAYOUT_HINT = (f"expected ROOT/{IMAGES_DIR}/*.jpg and ROOT/{IDENTITY_FILE} (or the official "
               f"download's ROOT/Img/{IMAGES_DIR} and ROOT/Anno/{IDENTITY_FILE})")


@dataclass(frozen=True)
class CelebALayout:
    images: Path
    identity_file: Path


def find_layout(root: str | Path) -> CelebALayout:
    """The image folder and identity file under ``root``; everything missing in one error."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"CelebA root {root} is not a folder; pass --root PATH/TO/celeba")
    images = next((p for p in (root / IMAGES_DIR, root / "Img" / IMAGES_DIR) if p.is_dir()), None)
    ids = next((p for p in (root / IDENTITY_FILE, root / "Anno" / IDENTITY_FILE) if p.is_file()),
               None)
    missing = [name for name, found in ((f"{IMAGES_DIR}/", images), (IDENTITY_FILE, ids))
               if found is None]
    if images is not None and not any(images.iterdir()):
        missing.append(f"the images in {images} (the folder is empty)")
    if missing:
        raise DataError(f"CelebA at {root} is incomplete: missing {' and '.join(missing)}; "
                        f"{LAYOUT_HINT}")
    assert images is not None and ids is not None
    return CelebALayout(images, ids)


def read_identities(path: Path) -> dict[str, int]:
    """``identity_CelebA.txt``: file name → identity id."""
    out: dict[str, int] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or not parts[1].isdigit():
            raise DataError(f"{path}:{number}: expected '<file> <identity>', got {line!r}; is "
                            f"this CelebA's {IDENTITY_FILE}?")
        out[parts[0]] = int(parts[1])
    if not out:
        raise DataError(f"{path} lists no images; re-download CelebA's {IDENTITY_FILE}")
    return out


def fgmia_ranking(identities: dict[str, int]) -> list[int]:
    """Identity ids by image count, most first (ties: smaller id first)."""
    counts = Counter(identities.values())
    return sorted(counts, key=lambda identity: (-counts[identity], identity))


def fgmia_groups(identities: dict[str, int], mini: int) -> tuple[list[int], list[int], list[int]]:
    """(Mini1 = aux, Mini2 = private, rest = public) identity ids, each in rank order."""
    ranked = fgmia_ranking(identities)
    top, rest = ranked[:2 * mini], ranked[2 * mini:]
    return top[0::2], top[1::2], rest


def files_of(identities: dict[str, int]) -> dict[int, list[str]]:
    """Identity id → its file names in sorted order."""
    out: dict[int, list[str]] = {}
    for name in sorted(identities):
        out.setdefault(identities[name], []).append(name)
    return out


def read_split_list(split_dir: Path, split: str) -> list[tuple[str, int | None]]:
    """One GMI/KEDMI list: (file name, label or None) per line."""
    names = GMI_LISTS[split]
    path = next((split_dir / n for n in names if (split_dir / n).is_file()), None)
    if path is None:
        raise DataError(f"no {' or '.join(names)} in {split_dir}; --set world.split_dir=PATH "
                        "must hold the GMI/KEDMI split lists")
    rows: list[tuple[str, int | None]] = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) > 2 or (len(parts) == 2 and not parts[1].lstrip("-").isdigit()):
            raise DataError(f"{path}:{number}: expected '<file> [<label>]', got {line!r}")
        rows.append((Path(parts[0]).name, int(parts[1]) if len(parts) == 2 else None))
    if split != "public" and any(label is None for _, label in rows):
        raise DataError(f"{path} has lines without a label; private lists need '<file> <label>'")
    return rows
