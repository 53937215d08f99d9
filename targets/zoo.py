"""The target model zoo: the entries of :mod:`mibench.targets.entries`, trained on demand,
cached, imported from user weights and loaded.

Storage: a trained entry is the cache entry ``<cache>/targets/<key>/`` (``target.pt`` in our
checkpoint format + ``info.json``), ``key`` hashing (config, the parent's key for fine-tuned
entries, the world's fingerprint, :data:`ZOO_VERSION`). User weights installed by
:func:`import_weights` (``mibench zoo import FILE --as NAME``) live in
``<cache>/user-weights/<preset>/<name>.pt`` and take precedence over training. Keys and
:func:`entry_status` need only a world's identity (:class:`~mibench.world.WorldSummary`), so
``mibench zoo list`` never builds the world.

The entry table's public names are importable from here as well.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Mapping

import torch

from mibench import precision
from mibench.cache import Cache, atomic_write_bytes
from mibench.registry import TARGETS
from mibench.target import Target
from mibench.targets.checkpoints import import_checkpoint, load_checkpoint, save_checkpoint
from mibench.targets.config import TargetConfig
from mibench.targets.defended import defended_entry, train_transfer
from mibench.targets.defenses import get_defense
from mibench.targets.entries import (DEFAULT_EVALUATOR, EVALUATORS, FINE_TUNE_EPOCHS,
                                     FINE_TUNE_ROUNDS, SECOND_EVALUATOR, AnyEntry, PretrainedEntry, Role, ZooEntry,
                                     evaluator_entry, expand_names, recipe, recipe_summary,
                                     second_evaluator_name)
from mibench.targets import entries
from mibench.targets.errors import TargetError
from mibench.targets.finetune import fine_tune, gallery_margin
from mibench.targets.models import (BACKBONES, OpenSetModel, build_target, class_templates,
                                    embed_split)
from mibench.targets.train import TrainMetrics, accuracy, train_target
from mibench.world import World, WorldSummary

__all__ = ["AnyEntry", "DEFAULT_EVALUATOR", "EVALUATORS", "FINE_TUNE_EPOCHS", "FINE_TUNE_ROUNDS",
           "PretrainedEntry", "SECOND_EVALUATOR", "ZooEntry", "ZooModel", "ZooStatus", "awaits_import", "entry_key",
           "entry_state", "entry_status", "evaluator_entry", "expand_names", "get_entry",
           "import_weights",
           "load_entry", "load_evaluator", "load_target", "parameter_count", "recipe", "recipe_summary",
           "resolve_device", "second_evaluator_name", "user_weights_path"]

ZOO_VERSION = "1"
COMPONENT = "targets"
CHECKPOINT = "target.pt"
INFO = "info.json"
USER_WEIGHTS = "user-weights"
Source = Literal["trained", "cache", "user", "pretrained"]
GALLERY = "gallery.pt"


@dataclass
class ZooModel:
    """A loaded zoo entry: the model, its config (none for pretrained models) and what
    training or enrolment measured."""

    name: str
    target: Target
    config: TargetConfig | None
    metrics: dict[str, Any]
    source: Source


@dataclass
class ZooStatus:
    """What ``mibench zoo list`` shows for one entry, without loading weights."""

    name: str
    role: Role
    kind: str
    params: int
    resolution: int
    accuracy: float | None
    train_seconds: float | None
    state: str


def get_entry(name: str, defenses: Mapping[str, Mapping[str, Any]] | None = None) -> AnyEntry:
    """The target or evaluation model called ``name`` (or an alias); a defended name
    (``ir152+mid``) with the run's ``defenses`` overrides (``--set defenses.mid.beta=…``)."""
    found = defended_entry(name, defenses) if defenses else None
    return found if found is not None else entries.get_entry(name)


def resolve_device(device: str | torch.device) -> torch.device:
    """``auto`` → CUDA when present, else CPU; ``cuda`` without a GPU is an error."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TargetError("--device cuda, but PyTorch sees no CUDA device; use --device cpu")
    return device


def user_weights_path(cache: Cache, preset: str, name: str) -> Path:
    """Where user weights for ``name`` at ``preset`` are installed (they win over training)."""
    return cache.root / USER_WEIGHTS / preset / f"{name}.pt"


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def entry_key(entry: AnyEntry, world: World | WorldSummary, cache: Cache, preset: str) -> str:
    """Identity of the model :func:`load_entry` returns: ``user-<sha256>`` of installed user
    weights, else the cache key of ``entry`` trained in ``world`` at ``preset`` (hashing the
    config and, for a fine-tuning round, its parent's identity); for a pretrained entry, the
    cache key of its gallery (weights file hash, world)."""
    if isinstance(entry, PretrainedEntry):
        weights = _file_sha256(entry.weights())[:16]
        return cache.key(COMPONENT, {"pretrained": entry.name, "weights": weights},
                         data=world.fingerprint, version=ZOO_VERSION)
    user = user_weights_path(cache, preset, entry.name)
    if user.is_file():
        return f"user-{_file_sha256(user)[:16]}"
    parent = None if entry.parent is None else entry_key(entry.parent, world, cache, preset)
    identity = {"config": entry.resolve(preset).identity(), "parent": parent}
    if precision.key_tag():  # trained under mixed precision: another model (fp32 keys as before)
        identity["precision"] = precision.key_tag()
    return cache.key(COMPONENT, identity, data=world.fingerprint, version=ZOO_VERSION)


def _train(entry: ZooEntry, cfg: TargetConfig, world: World, cache: Cache, preset: str,
           device: torch.device, progress: bool) -> tuple[Target, TrainMetrics]:
    private_train, private_test = world.split("private-train"), world.split("private-test")
    if entry.parent is not None:
        parent = load_entry(entry.parent, world, cache, preset, device, progress).target
        return fine_tune(parent, cfg, train=private_train, val=private_test, device=device,
                         progress=progress)
    if cfg.defense and get_defense(cfg.defense, cfg.defense_config).transfer:
        return train_transfer(cfg, public=world.split("public"), private_train=private_train,
                              private_test=private_test, device=device, progress=progress)
    if cfg.kind == "closed":
        return train_target(cfg, train=private_train, val=private_test, device=device,
                            progress=progress)
    return train_target(cfg, train=world.split("public"), val=private_test,
                        gallery=private_train, device=device, progress=progress)


def _measured(target: Target, metrics: Mapping[str, Any], world: World) -> dict[str, Any]:
    """Training metrics plus, for open-set targets, identification accuracy and gallery margin
    on private-train (the Table III sanity numbers)."""
    out = dict(metrics)
    if isinstance(target, OpenSetModel):
        private_train = world.split("private-train")
        out["private_train_accuracy"] = accuracy(target, private_train)
        out["private_train_margin"] = gallery_margin(target, private_train)
    return out


def load_entry(entry: AnyEntry, world: World, cache: Cache, preset: str = "mini",
               device: str | torch.device = "cpu", progress: bool = True) -> ZooModel:
    """Load ``entry`` for ``world``: installed user weights, else the cache, else train it (an
    import-only entry without weights is an error saying how to import them)."""
    device = resolve_device(device)
    if isinstance(entry, PretrainedEntry):
        return _load_pretrained(entry, world, cache, device)
    user = user_weights_path(cache, preset, entry.name)
    if user.is_file():
        return _load_user_weights(entry, user, world, device)
    if entry.imported:
        raise TargetError(f"{entry.name} is never trained here; get {entry.weights_file} and "
                          f"run `mibench zoo import FILE --as {entry.name}` (installs it at "
                          f"{user})")
    cfg = entry.resolve(preset)
    key = entry_key(entry, world, cache, preset)
    source: Source = "cache" if cache.lookup(COMPONENT, key) else "trained"

    def build(out: Path) -> None:
        target, metrics = _train(entry, cfg, world, cache, preset, device, progress)
        measured = _measured(target, metrics.to_dict(), world)
        save_checkpoint(out / CHECKPOINT, target, cfg, metrics=measured,
                        data_fingerprint=world.fingerprint)
        info = {"name": entry.name, "config": cfg.to_dict(), "metrics": measured}
        atomic_write_bytes(out / INFO, json.dumps(info, indent=2).encode())

    path = cache.build(COMPONENT, key, build)
    loaded = load_checkpoint(path / CHECKPOINT, device)
    return ZooModel(entry.name, loaded.target, loaded.config, loaded.metrics, source)


def _load_pretrained(entry: PretrainedEntry, world: World, cache: Cache,
                     device: torch.device) -> ZooModel:
    """Released weights plus the gallery of ``world``'s private identities (cached)."""
    target = entry.build(world.num_private).to(device).eval()
    key = entry_key(entry, world, cache, "")

    def enrol(out: Path) -> None:
        private_train = world.split("private-train")
        target.enrol(class_templates(embed_split(target, private_train), private_train.labels,
                                     world.num_private).to(device))
        metrics = {"val_accuracy": accuracy(target, world.split("private-test")),
                   "private_train_accuracy": accuracy(target, private_train),
                   "private_train_margin": gallery_margin(target, private_train),
                   "weights": str(entry.weights())}
        torch.save(target.gallery.cpu(), out / GALLERY)
        atomic_write_bytes(out / INFO, json.dumps({"name": entry.name, "metrics": metrics},
                                                  indent=2).encode())

    path = cache.build(COMPONENT, key, enrol)
    target.enrol(torch.load(path / GALLERY, map_location=device, weights_only=True))
    metrics = json.loads((path / INFO).read_text())["metrics"]
    return ZooModel(entry.name, target, None, metrics, "pretrained")


def _load_user_weights(entry: ZooEntry, path: Path, world: World,
                       device: torch.device) -> ZooModel:
    loaded = load_checkpoint(path, device)
    target, metrics = loaded.target, loaded.metrics
    if loaded.data_fingerprint != world.fingerprint:
        target = _fit_to_world(entry.name, loaded.config, import_checkpoint(path, loaded.config),
                               world).to(device)
        metrics = {**metrics, "val_accuracy": None}
    return ZooModel(entry.name, target, loaded.config, metrics, "user")


def _fit_to_world(name: str, cfg: TargetConfig, state: Mapping[str, torch.Tensor],
                  world: World) -> Target:
    """A target of ``cfg`` holding ``state`` for ``world``'s private identities: closed-set
    heads must already classify them; open-set targets enrol them from private-train."""
    head = f"{BACKBONES[cfg.arch].head_key}.weight"
    if cfg.kind == "closed":
        if head not in state:
            raise TargetError(f"weights for {name} have no classifier head ({head}); a "
                              "closed-set target needs one")
        if state[head].shape[0] != world.num_private:
            raise TargetError(f"weights for {name} classify {state[head].shape[0]} identities "
                              f"but world {world.name} has {world.num_private} private ones")
    target = build_target(cfg, world.num_private)
    target.load_published(state, name)
    if isinstance(target, OpenSetModel):
        target.enrol_from_split(world.split("private-train"))
    return target.eval()


def import_weights(file: str | os.PathLike[str], name: str, world: World, cache: Cache,
                   preset: str = "mini", overrides: Mapping[str, Any] | None = None) -> Path:
    """Install a user's checkpoint (any format :func:`import_checkpoint` reads) as ``name`` at
    ``preset``: converted to our format, gallery enrolled, private-test accuracy recorded.

    ``overrides`` are config fields where the file differs from the preset's architecture
    (e.g. ``{"width": 1.0, "resolution": 64, "feature_dim": 512}`` for KEDMI's 64 px IR-152).
    Returns the installed path; :func:`load_entry` loads it from then on.
    """
    entry = get_entry(name)
    if isinstance(entry, PretrainedEntry):
        raise TargetError(f"{entry.name} is a pretrained model whose weights come from its "
                          "package; there is nothing to import for it")
    cfg = TargetConfig.resolve(None, {**entry.resolve(preset).to_dict(), **(overrides or {})})
    target = _fit_to_world(entry.name, cfg, import_checkpoint(file, cfg), world)
    metrics = {"val_accuracy": accuracy(target, world.split("private-test")),
               "imported_from": str(file)}
    path = user_weights_path(cache, preset, entry.name)
    save_checkpoint(path, target, cfg, metrics=_measured(target, metrics, world),
                    data_fingerprint=world.fingerprint)
    return path


def awaits_import(entry: AnyEntry, cache: Cache, preset: str) -> bool:
    """Whether ``entry`` is import-only and its weights have not been installed at ``preset``."""
    return isinstance(entry, ZooEntry) and entry.imported and \
        not user_weights_path(cache, preset, entry.name).is_file()


def load_target(name: str, world: World, cache: Cache, preset: str = "mini",
                device: str | torch.device = "cpu", progress: bool = True) -> Target:
    """The target ``name`` (or alias) for ``world``, trained and cached on first use."""
    entry: AnyEntry = TARGETS.get(name)
    return load_entry(entry, world, cache, preset, device, progress).target


def load_evaluator(world: World, cache: Cache, preset: str = "mini",
                   device: str | torch.device = "cpu", progress: bool = True,
                   name: str = DEFAULT_EVALUATOR) -> Target:
    """The evaluation model ``name`` for ``world`` (see :func:`evaluator_entry`), trained or
    enrolled on first use."""
    return load_entry(evaluator_entry(name), world, cache, preset, device, progress).target


def parameter_count(entry: ZooEntry, preset: str, num_classes: int) -> int:
    """Trainable and frozen parameters of ``entry`` at ``preset`` (built once per architecture,
    on the meta device)."""
    cfg = entry.resolve(preset)
    shape = {k: v for k, v in cfg.to_dict().items() if k not in SCHEDULE_FIELDS}
    return _meta_parameter_count(json.dumps(shape, sort_keys=True), num_classes)


SCHEDULE_FIELDS = frozenset({"epochs", "batch_size", "lr", "warmup_epochs", "momentum",
                             "weight_decay", "images_per_identity", "augment",
                             "label_smoothing", "seed"})
"""TargetConfig fields that change training but not the network, so not its size."""


@functools.lru_cache(maxsize=None)
def _meta_parameter_count(shape_json: str, num_classes: int) -> int:
    with torch.device("meta"):
        target = build_target(TargetConfig(**json.loads(shape_json)), num_classes)
    return sum(p.numel() for p in target.parameters())


def entry_state(entry: AnyEntry, world: World | WorldSummary, cache: Cache, preset: str) -> str:
    """Whether ``entry`` is trained, cached, installed or still to train (cheap: builds nothing)."""
    if isinstance(entry, PretrainedEntry):
        return _pretrained_status(entry, world, cache).state
    return _recorded(entry, world, cache, preset)[0]


def _recorded(entry: ZooEntry, world: World | WorldSummary, cache: Cache,
              preset: str) -> tuple[str, Mapping[str, Any]]:
    user = user_weights_path(cache, preset, entry.name)
    if user.is_file():
        return "user weights", load_checkpoint(user).metrics
    found = cache.lookup(COMPONENT, entry_key(entry, world, cache, preset))
    if found:
        return "cached", json.loads((found / INFO).read_text())["metrics"]
    return ("not imported" if entry.imported else "not trained"), {}


def entry_status(entry: AnyEntry, world: World | WorldSummary, cache: Cache,
                 preset: str) -> ZooStatus:
    """Kind, size and, if trained or installed, accuracy and training time of ``entry``."""
    if isinstance(entry, PretrainedEntry):
        return _pretrained_status(entry, world, cache)
    cfg = entry.resolve(preset)
    state, metrics = _recorded(entry, world, cache, preset)
    return ZooStatus(entry.name, entry.role, cfg.kind,
                     parameter_count(entry, preset, world.num_private), cfg.input_resolution,
                     metrics.get("val_accuracy"), metrics.get("wall_time_s"), state)


def _pretrained_status(entry: PretrainedEntry, world: World | WorldSummary,
                       cache: Cache) -> ZooStatus:
    try:
        found = cache.lookup(COMPONENT, entry_key(entry, world, cache, ""))
    except TargetError as err:
        return ZooStatus(entry.name, entry.role, entry.kind, entry.params, entry.resolution,
                         None, None, f"unavailable: {err}")
    accuracy_ = json.loads((found / INFO).read_text())["metrics"]["val_accuracy"] if found \
        else None
    state = "pretrained, gallery cached" if found else "pretrained, gallery not enrolled"
    return ZooStatus(entry.name, entry.role, entry.kind, entry.params, entry.resolution,
                     accuracy_, None, state)
