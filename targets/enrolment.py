"""How an open-set target's gallery is enrolled for a run (issue 18.5, attacks.md §8.7).

Two protocols, chosen by ``run.enrolment`` and shared by every attack and target of the run:

- ``single`` (default, the paper's and FGMIA's code): one private-train image per identity. The
  image is a seeded, deterministic choice: for identity k, position
  ``randint(n_k)`` among its n_k private-train images (in split order), drawn from one
  ``torch.Generator`` seeded with the run's ``seed`` (not a cell's: with ``--seeds`` every
  cell of the run sees one gallery, as it sees one trained target), identities in order 0, 1,
  …; the same seed picks the same images for every attack and target.
- ``mean``: the L2-normalised mean of the normalised embeddings of all the identity's
  private-train images (:func:`~mibench.targets.models.class_templates`): the gallery the zoo
  caches with every open-set target, which such a target is loaded with.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

from mibench.target import OpenSetTarget, Target
from mibench.targets.errors import TargetError
from mibench.world import Split

ENROLMENTS = ("single", "mean")


def run_enrolment(run: Mapping[str, Any]) -> str:
    """The enrolment of a run's ``run`` section; runs stored before the option enrolled the
    mean."""
    return str(run.get("enrolment", "mean"))


def single_image_rows(labels: torch.Tensor, num_classes: int, seed: int) -> torch.Tensor:
    """Row of ``labels`` enrolled for each identity 0..num_classes−1 under ``single``."""
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for k in range(num_classes):
        own = torch.nonzero(labels == k).flatten()
        if not len(own):
            raise TargetError(f"class {k} has no private-train image to enrol; every identity "
                              "needs at least one")
        rows.append(own[int(torch.randint(len(own), (1,), generator=gen))])
    return torch.stack(rows)


@torch.no_grad()
def enrol(target: Target, split: Split, mode: str, seed: int) -> None:
    """Enrol ``target``'s gallery from ``split`` (private-train) under ``mode``; a closed-set
    target, and ``mean`` (the gallery it was loaded with), are left as they are."""
    if mode not in ENROLMENTS:
        raise TargetError(f"unknown enrolment {mode!r}; choose one of {list(ENROLMENTS)}")
    if mode == "mean" or not isinstance(target, OpenSetTarget):
        return
    rows = single_image_rows(split.labels, target.num_classes, seed)
    device = target.gallery.device
    was_training = target.training
    target.eval()
    features = target.embed(target.preprocess(split.float_images(rows).to(device)))
    target.train(was_training)
    target.enrol(features)
