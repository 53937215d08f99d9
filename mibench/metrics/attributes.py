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

import torch

from mibench.metrics.attribute_reference import (CONTINUOUS_NAMES, DISCRETE_NAMES,
                                                 AttributeReference, continuous_errors,
                                                 discrete_hits)
from mibench.metrics.base import Measured, MetricUnavailable, metric
from mibench.metrics.context import EvalContext


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
