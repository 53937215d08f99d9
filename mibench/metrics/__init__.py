"""Metrics for model-inversion results (design.md §2).

Importing the package registers every built-in metric in ``mibench.registry.METRICS``:
``target_acc1/5``, ``eval_acc1/5``, ``eval2_acc1/5``, ``transfer_gap`` (accuracy.py), ``knn_l2``, ``knn_cos``, ``feat_dist``
(knn.py), ``fid`` (fid.py, weights from inception.py), ``kid`` (kid.py), ``precision``,
``recall``, ``density``, ``coverage`` (prdc.py), ``lpips`` and ``st_lpips`` (perceptual.py),
``sar_far1e-3`` (verification.py), ``attr_err`` and ``attr_acc`` (attributes.py, synthetic
worlds). Each value gets a 95 % interval over the attacked identities
(bootstrap.py). The harness builds one :class:`PrivateReference` per run (its features kept
in the cache by a :class:`ReferenceStore`) and calls :func:`measure` on one
:class:`EvalContext` per cell and on its selected subset.
"""

from mibench.metrics import (accuracy, attributes, fid, kid, knn, perceptual,  # noqa: F401
                             prdc, verification)  # (registration)
from mibench.metrics.base import (FeatureSets, Measured, Metric, MetricSpec, MetricUnavailable,
                                  MetricValue, metric, set_metric)
from mibench.metrics.context import EvalContext
from mibench.metrics.evaluate import default_metrics, evaluate, measure
from mibench.metrics.reference import PrivateReference, ReferenceStore

__all__ = ["EvalContext", "FeatureSets", "Measured", "Metric", "MetricSpec", "MetricUnavailable",
           "MetricValue", "PrivateReference", "ReferenceStore", "default_metrics", "evaluate",
           "measure", "metric", "set_metric"]
