"""Target model zoo: architectures, heads, training and checkpoint formats.

Build, train, save and import targets::

    cfg = TargetConfig.resolve("mini", {"arch": "iresnet", "depth": 18, "loss": "arcface"})
    target, metrics = train_target(cfg, train=public, val=private_test, gallery=private_train)
    save_checkpoint(path, target, cfg, metrics=metrics.to_dict(),
                    data_fingerprint=world.fingerprint)
    target = load_checkpoint(path).target
    target.load_published(import_checkpoint("backbone.pth", cfg))   # released weights

The zoo (:mod:`mibench.targets.zoo`) names them, fills the ``TARGETS`` registry on import, and
trains and caches them on demand::

    target = load_target("arcface", world, cache, preset="mini")
    evaluator = load_evaluator(world, cache, preset="mini")
"""

from __future__ import annotations

from mibench.targets.checkpoints import (LoadedTarget, import_checkpoint, load_checkpoint,
                                         save_checkpoint)
from mibench.targets.config import TargetConfig
from mibench.targets.errors import CheckpointError, TargetError
from mibench.targets.models import ClosedSetModel, OpenSetModel, build_backbone, build_target
from mibench.targets.train import TrainMetrics, train_target
from mibench.targets.zoo import (DEFAULT_EVALUATOR, EVALUATORS, ZooEntry, import_weights,
                                 load_evaluator, load_target)

__all__ = ["CheckpointError", "ClosedSetModel", "DEFAULT_EVALUATOR", "EVALUATORS", "LoadedTarget",
           "OpenSetModel", "TargetConfig", "TargetError", "TrainMetrics", "ZooEntry",
           "build_backbone", "build_target", "import_checkpoint", "import_weights",
           "load_checkpoint", "load_evaluator", "load_target", "save_checkpoint",
           "train_target"]
