"""Defended zoo entries, derived by name from a base entry: ``BASE+DEFENSE``, optionally with
field overrides ``BASE+DEFENSE:field=value[:field=value]`` (e.g. ``ir152+mid:beta=0.01``, as
the defense sweep names its targets). The entry is the base's recipe plus the defense and its
resolved config, so it is cached under its own key; ``TARGETS.expand("ir152+*")`` lists every
defended IR-152. Run-wide overrides (``--set defenses.mid.beta=0.01``) reach
:func:`defended_entry` as ``defenses``; those written in the name win.

TL-DMI trains differently (:func:`train_transfer`): pre-training on the public split, then
freezing the early layers, then fine-tuning the rest on private-train.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Mapping

import torch
import yaml

from mibench.registry import DEFENSES, TARGETS
from mibench.target import Target
from mibench.targets.config import TargetConfig
from mibench.targets.defenses import get_defense
from mibench.targets.defenses.tldmi import freeze_early_layers
from mibench.targets.entries import ZooEntry
from mibench.targets.errors import TargetError
from mibench.targets.finetune import fine_tune
from mibench.targets.models import build_target
from mibench.targets.train import (TrainMetrics, accuracy, build_objective, fit,
                                   identity_labelled, train_target)
from mibench.world import Split

SEP, FIELD_SEP = "+", ":"
DEFENDED_ARCHS = ("irse", "iresnet")


def split_name(name: str) -> tuple[str, str, dict[str, Any]]:
    """``BASE+DEFENSE:k=v`` → (BASE, DEFENSE, {k: v}) with YAML-typed values."""
    base, _, rest = name.partition(SEP)
    defense, *fields = rest.split(FIELD_SEP)
    overrides = {}
    for text in fields:
        key, eq, value = text.partition("=")
        if not eq or not key:
            raise TargetError(f"target {name!r}: write defense fields as {SEP}{defense}"
                              f"{FIELD_SEP}field=value")
        overrides[key] = yaml.safe_load(value)
    return base, defense, overrides


def _defensible(entry: Any) -> bool:
    return (isinstance(entry, ZooEntry) and entry.parent is None and entry.role == "target"
            and entry.config.get("arch") in DEFENDED_ARCHS)


def defended_entry(name: str, defenses: Mapping[str, Mapping[str, Any]] | None = None
                   ) -> ZooEntry | None:
    """The defended entry ``name`` names (None if it names no defense)."""
    if SEP not in name:
        return None
    base_name, defense_name, overrides = split_name(name)
    base = TARGETS.get(base_name)
    if not _defensible(base):
        raise TargetError(f"{base_name} cannot be defended: defenses apply to trained irse / "
                          "iresnet targets (not fine-tuned or pretrained ones)")
    defense = get_defense(defense_name, {**(defenses or {}).get(defense_name, {}), **overrides})
    canonical = SEP.join((base.name, FIELD_SEP.join(
        [defense.name, *(f"{k}={v}" for k, v in overrides.items())])))
    config = {**base.config, "defense": defense.name, "defense_config": defense.config.to_dict()}
    return ZooEntry(canonical, f"{base.description}; defense: {defense.paper}", config,
                    base.tuned)


def defended_names() -> list[str]:
    """Every base entry with every defense (what ``+`` patterns match)."""
    bases = [name for name, entry in TARGETS.items() if _defensible(entry)]
    return [f"{base}{SEP}{defense}" for base in bases for defense in DEFENSES.names()]


def train_transfer(cfg: TargetConfig, *, public: Split, private_train: Split,
                   private_test: Split, device: str | torch.device = "cpu",
                   progress: bool = True) -> tuple[Target, TrainMetrics]:
    """TL-DMI: pre-train on public for ``pretrain`` of the entry's training volume (closed
    set: a head over the public identities, epochs scaled by private-train / public images),
    freeze the early layers, then the remaining epochs on private-train; in all about the
    undefended entry's training time."""
    started, cpu_started = time.perf_counter(), time.process_time()
    tl = get_defense(cfg.defense, cfg.defense_config).config
    volume = len(private_train) / len(public) if cfg.kind == "closed" else 1.0
    pre = dataclasses.replace(cfg, epochs=max(1, round(cfg.epochs * tl.pretrain * volume)),
                              defense="", defense_config={})
    fine = dataclasses.replace(cfg, epochs=max(1, round(cfg.epochs * (1.0 - tl.pretrain))),
                               defense="", defense_config={})
    if cfg.kind == "closed":
        labelled = identity_labelled(public)
        source = build_target(pre, labelled.num_classes)
        pre_steps, _ = fit(source, build_objective(pre, labelled.num_classes), labelled, pre,
                           device=device, progress=progress)
        target = build_target(cfg, private_train.num_classes).to(device)
        head = f"backbone.{target.backbone.head_key}."
        target.load_state_dict({k: v for k, v in source.state_dict().items()
                                if not k.startswith(head)}, strict=False)
        freeze_early_layers(target.backbone, tl.freeze)
        steps, loss = fit(target, build_objective(fine, private_train.num_classes),
                          private_train, fine, device=device, progress=progress)
        steps += pre_steps
    else:
        source, pre_metrics = train_target(pre, train=public, gallery=private_train,
                                           device=device, progress=progress)
        freeze_early_layers(source.backbone, tl.freeze)
        target, metrics = fine_tune(source, fine, train=private_train, device=device,
                                    progress=progress)
        steps, loss = pre_metrics.steps + metrics.steps, metrics.final_loss
    return target, TrainMetrics(train_accuracy=accuracy(target, private_train),
                                val_accuracy=accuracy(target, private_test), final_loss=loss,
                                steps=steps, wall_time_s=time.perf_counter() - started,
                                cpu_time_s=time.process_time() - cpu_started)


TARGETS.derive(defended_entry, defended_names)
