"""The attribute reference of a synthetic world (issue 19.5): the attribute regressor, the private
identities' true attributes and the ceiling and chance references (metrics/attributes.py uses it).
"""

from __future__ import annotations

from functools import cached_property

import torch

from mibench.cache import Cache
from mibench.datasets.synth.identity import CONTINUOUS, DISCRETE
from mibench.metrics.attribute_model import (N_CONTINUOUS, AttributeRegressor, load_regressor,
                                             predict, split_outputs)
from mibench.world import Split, World

CONTINUOUS_NAMES = tuple(name for name, _ in CONTINUOUS)
DISCRETE_NAMES = tuple(name for name, _, _ in DISCRETE)
CHUNK = 64  # identities whose references are computed at once (k × test images × attributes)


def continuous_errors(outputs: torch.Tensor, truth: torch.Tensor,
                      scale: torch.Tensor) -> torch.Tensor:
    """|predicted − true| / σ per image (row) and continuous attribute (column)."""
    return (split_outputs(outputs)[0] - truth[..., :N_CONTINUOUS]).abs() / scale


def discrete_hits(outputs: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """1.0 where a discrete head's argmax is the true class, per image and discrete attribute."""
    predicted = torch.stack([head.argmax(dim=-1) for head in split_outputs(outputs)[1]], dim=-1)
    return (predicted == truth[..., N_CONTINUOUS:].long()).float()


class AttributeReference:
    """The regressor, the private identities' true attributes and the per-identity ceiling and
    chance references on the private-test images (computed once, for every private identity)."""

    def __init__(self, regressor: AttributeRegressor, test: Split, public: Split) -> None:
        if test.attributes is None or public.attributes is None:
            raise ValueError("the attribute reference needs splits with ground-truth attributes")
        self.regressor = regressor
        self.test = test
        self.device = next(regressor.parameters()).device
        truth = torch.zeros(test.num_classes, test.attributes.shape[1])
        truth[test.labels] = test.attributes.float()
        self.truth = truth.to(self.device)
        # public identities have equal image counts: the std over images is the one over them
        self.scale = public.attributes[:, :N_CONTINUOUS].float().std(dim=0).to(self.device)

    @classmethod
    def of_world(cls, world: World, cache: Cache, preset: str,
                 device: torch.device) -> AttributeReference | None:
        """The reference of ``world`` (its regressor trained on first use), ``None`` when the
        world has no ground-truth attributes."""
        if world.split("private-test").attributes is None:
            return None
        return cls(load_regressor(world, cache, preset, device), world.split("private-test"),
                   world.split("public"))

    def outputs(self, images: torch.Tensor) -> torch.Tensor:
        return predict(self.regressor, images)

    @cached_property
    def references(self) -> dict[str, torch.Tensor]:
        """Per private identity (rows): ceiling and chance errors (× continuous attributes) and
        hits (× discrete attributes) of private-test images, own and other identities'."""
        outputs = self.outputs(self.test.float_images())
        labels = self.test.labels.to(self.device)
        parts: dict[str, list[torch.Tensor]] = {"err_ceiling": [], "err_chance": [],
                                                "acc_ceiling": [], "acc_chance": []}
        for ids in torch.arange(self.truth.shape[0], device=self.device).split(CHUNK):
            truth = self.truth[ids][:, None, :]                      # k × 1 × attributes
            own = (labels[None, :] == ids[:, None]).float()[..., None]  # k × M × 1
            for kind, values in (("err", continuous_errors(outputs[None], truth, self.scale)),
                                 ("acc", discrete_hits(outputs[None], truth))):
                parts[f"{kind}_ceiling"].append((values * own).sum(1) / own.sum(1))
                parts[f"{kind}_chance"].append((values * (1 - own)).sum(1) / (1 - own).sum(1))
        return {name: torch.cat(rows) for name, rows in parts.items()}
