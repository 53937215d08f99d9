"""Ground-truth attribute leakage (issue 19.5): what of an identity's true face an attack recovers.

The synthetic world knows each identity's 21 continuous and 3 discrete attributes
(datasets/synth/identity.py). The attribute regressor (attribute_model.py, trained on the
``public`` split only) reads them off every generated image, and:

* ``attr_err``: mean over images and continuous attributes of |predicted − true| / σ, the true
  attribute of the image's intended identity and σ the attribute's standard deviation over the
  public identities (so every attribute weighs alike; age spans a narrower range than the rest);
* ``attr_acc``: mean over images and the discrete attributes (hairstyle, beard, glasses) of
  predicted class == true class.

Each comes with two references measured the same way, over the same identities weighted by
their generated images: the *ceiling*, the identity's own private-test images (what real
photographs of the person give through this regressor), and *chance*, the private-test images
of every other private identity (what an image unrelated to the person gives). Both, and every
attribute's own value, are in the value's ``detail`` (``ceiling``, ``chance``,
``err:<name>``/``acc:<name>``, ``ceiling:<name>``, ``chance:<name>``), which the report's
leakage table shows. Worlds without attributes (real data) have no value, with the reason.
"""

from __future__ import annotations

from functools import cached_property

import torch

from mibench.cache import Cache
from mibench.datasets.synth.identity import CONTINUOUS, DISCRETE
from mibench.metrics.attribute_model import (N_CONTINUOUS, AttributeRegressor, load_regressor,
                                             predict, split_outputs)
from mibench.metrics.base import Measured, MetricUnavailable, metric
from mibench.metrics.context import EvalContext
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


def reference_of(ctx: EvalContext) -> AttributeReference:
    """The context's attribute reference, or why there is none."""
    if ctx.private.split.attributes is None:
        raise MetricUnavailable("this world has no ground-truth identity attributes (only the "
                                "synthetic world knows them)")
    found = ctx.private.attributes
    if found is None:
        raise MetricUnavailable("no attribute regressor was given to the private reference "
                                "(PrivateReference(attributes=AttributeReference.of_world(...)))")
    return found


def leakage(ctx: EvalContext, kind: str) -> Measured:
    """``attr_err`` (kind ``err``) or ``attr_acc`` (``acc``) of ``ctx`` with its references."""
    ref = reference_of(ctx)
    outputs = ctx.per_image("attribute_outputs", ref.outputs)
    labels = ctx.labels.to(ref.device)
    truth = ref.truth[labels]
    values = (continuous_errors(outputs, truth, ref.scale) if kind == "err"
              else discrete_hits(outputs, truth))
    names = CONTINUOUS_NAMES if kind == "err" else DISCRETE_NAMES
    ids, counts = torch.unique(labels, return_counts=True)
    weights = (counts.float() / counts.sum())[:, None]
    per_attribute = {"": values.mean(dim=0)}
    for which in ("ceiling", "chance"):
        per_attribute[which] = (ref.references[f"{kind}_{which}"][ids] * weights).sum(dim=0)
    detail = {which: float(v.mean()) for which, v in per_attribute.items() if which}
    for which, v in per_attribute.items():
        prefix = which or kind
        detail.update({f"{prefix}:{name}": float(x) for name, x in zip(names, v.tolist())})
    return Measured(float(per_attribute[""].mean()), detail)


@metric("attr_err", "lower", "Ground-truth attribute error: mean |predicted - true| / std over "
        "the 21 continuous attributes (synthetic world; public-split regressor)",
        needs=("attribute_regressor",))
def attr_err(ctx: EvalContext) -> Measured:
    return leakage(ctx, "err")


@metric("attr_acc", "higher", "Ground-truth discrete-attribute accuracy: hairstyle, beard, "
        "glasses read by the public-split regressor (synthetic world)", needs=("attribute_regressor",))
def attr_acc(ctx: EvalContext) -> Measured:
    return leakage(ctx, "acc")
