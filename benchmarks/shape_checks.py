"""One paper-shapes check per component, in the current process (``paper_shapes.py --one``).

An attack check builds the attack from ``Config.resolve("paper", plan.overrides)``, where the
overrides in :data:`PLANS` only cut step counts, epochs, candidate counts and batch sizes
(never architecture, resolution or widths), and runs ``prepare``, ``invert`` and ``select``
for 2 identities × 2 samples against an untrained zoo target built at ``paper``, with an aux
split of :data:`AUX_IMAGES` random 112 px images, in the context the harness builds
(``mibench.harness.attack_setting``: access view, query ledger, fingerprints, a private cache).
A target check builds a zoo entry at ``paper`` and times one SGD step of its training loss on
a batch of 4 and one forward. Both return a JSON-ready row.
"""

from __future__ import annotations

import math
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from mibench.access import QueryLedger, view_for
from mibench.attack import Attack, AttackContext
from mibench.cache import Cache
from mibench.datasets.synth.config import WorldConfig
from mibench.errors import MibenchError
from mibench.registry import ATTACKS
from mibench.target import OpenSetTarget, Target
from mibench.targets.models import build_target
from mibench.targets.train import GRAD_CLIP, build_objective
from mibench.targets.zoo import PretrainedEntry, get_entry
from mibench.world import Split

PAPER_WORLD = WorldConfig.resolve("paper")
RESOLUTION = PAPER_WORLD.resolution  # the paper world's 112 px
AUX_IMAGES = 36                      # a few dozen aux images: 12 identities × 3
IDENTITIES, SAMPLES = 2, 2
TARGET_BATCH = 4
SEED = 0


class ShapeCheckError(MibenchError):
    """A component ran but returned something of the wrong shape or range."""


def epochs_for(steps: int, batch_size: int) -> float:
    """Epochs over the aux split for which ``ceil(epochs · |aux| / batch)`` is ``steps``."""
    return (steps - 0.5) * batch_size / AUX_IMAGES


@dataclass(frozen=True)
class Plan:
    """Overrides of an attack's paper config and the optimiser steps they leave per phase
    (``None``: unknown, e.g. a plugin; s/step is then per timed loop iteration).
    ``classes``: the target's class count (None = the paper's private identities)."""

    overrides: Mapping[str, Any] = field(default_factory=dict)
    prepare_steps: int | None = None
    invert_steps: int | None = None
    classes: int | None = None


# a DCGAN prior: 2 critic steps and 1 generator step at batch 64; 2 latent steps
DCGAN_OVERRIDES = {"gan_epochs": epochs_for(2, 64), "n_critic": 2, "iterations": 2}
FGMIA_PLAN = Plan({"train_steps": 2, "batch_size": 2, "sampler_steps": 2}, 2, 2)
PLANS: dict[str, Plan] = {
    # WGAN-GP: 2 critic steps and 1 generator step (n_critic 5 → 2) at the paper batch 64;
    # 2 latent steps.
    "gmi": Plan(DCGAN_OVERRIDES, 2, 2),
    # KEDMI GAN: 2 discriminator steps and 1 generator step (n_critic 5 → 2) at batch 64; 2 Adam
    # steps on (μ, log σ²).
    "kedmi": Plan(DCGAN_OVERRIDES, 2, 2),
    # the same, then 2 distillation steps per EfficientNet surrogate at batch 64 (3 × 2).
    "gmi+lomma": Plan({**DCGAN_OVERRIDES, "kd_epochs": epochs_for(2, 64)}, 8, 2),
    "kedmi+lomma": Plan({**DCGAN_OVERRIDES, "kd_epochs": epochs_for(2, 64)}, 8, 2),
    # α-GAN: 2 steps (each 2 E/G steps + 1 D/C step) at the paper batch 64; 2 Adam steps on z.
    "fmi": Plan({"gan_epochs": epochs_for(2, 64), "iterations": 2}, 2, 2),
    # cGAN: 2 generator steps with 1 discriminator step each (n_dis 5 → 1), batch 64 → 8 (the
    # target is in the loop); 2 Adam steps on z.
    "plg": Plan({"gan_steps": 2, "n_dis": 1, "gan_batch_size": 8, "iterations": 2}, 2, 2),
    # StyleGAN prior: 2 steps at batch 32 → 2 (1024 px); 4 search candidates (2,000), scored
    # and optimised 2 at a time (64); 2 Adam steps on w; 2 final-selection draws (100).
    "ppa": Plan({"gan_epochs": epochs_for(2, 2), "gan_batch_size": 2, "search_space": 4,
                 "batch_size": 2, "iterations": 2, "final_draws": 2}, 2, 2),
    # the same prior; 4 candidates (5,000), 2 at a time; all 5 stages, 2+1+1+1+1 steps.
    "ifgmi": Plan({"gan_epochs": epochs_for(2, 2), "gan_batch_size": 2, "search_space": 4,
                   "batch_size": 2, "stage_steps": (2, 1, 1, 1, 1)}, 2, 6),
    # pre-training: 2 steps at batch 150 → 4; fine-tuning: 1 epoch over the first 0.3 of a
    # 4-class target (1 class), 2 classes per step (4) = 1 step through 2 sampler steps (10,
    # keeping 2 of 8 x̂₀); attack: 2 iterations (30), refinement on a 10-step grid (100: the 1
    # step in (0, 100]), 1 PGD step (10). A 1,000-class target would make the fine-tuning
    # epoch 75 steps (classes 0–299, 4 per step).
    "diffmi": Plan({"train_steps": 2, "batch_size": 4, "ft_epochs": 1, "ft_classes": 2,
                    "ft_sampler_steps": 2, "ft_keep": 2, "steps": 2, "final_grid": 10,
                    "pgd_steps": 1}, 3, 2, classes=4),
    # pre-training: 2 steps at batch 150 → 4; 2 DDIM steps (100), 2 candidates per sample (4).
    "uami": Plan({"train_steps": 2, "batch_size": 4, "sampler_steps": 2, "candidates": 2},
                 2, 2),
    # prior: 2 steps at batch 16 → 2; 2 DDIM steps (50). The ablations differ in flags only.
    "fgmia": FGMIA_PLAN, "fgmia-no-fg": FGMIA_PLAN, "fgmia-no-transf": FGMIA_PLAN,
    "fgmia-no-scaleft": FGMIA_PLAN,
}


def _now(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


class TimedBar:
    """A progress bar whose loop bodies are timed (one duration per iteration)."""

    def __init__(self, bar: Any, durations: list[float], device: torch.device) -> None:
        self.bar, self.durations, self.device = bar, durations, device

    def __iter__(self) -> Iterator[Any]:
        for item in self.bar:
            start = _now(self.device)
            try:
                yield item
            finally:
                self.durations.append(_now(self.device) - start)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.bar, name)


@dataclass
class TimedContext(AttackContext):
    """The attack context with every ``progress`` loop timed, by the loop's ``desc``."""

    loops: dict[str, list[float]] = field(default_factory=dict)

    def progress(self, iterable: Iterable[Any] | None = None, **kwargs: Any) -> Any:
        durations = self.loops.setdefault(str(kwargs.get("desc", "loop")), [])
        return TimedBar(super().progress(iterable, **kwargs), durations, self.device)


def peak_memory_gib(device: torch.device) -> float:
    """Peak RSS of this process (CPU) or peak allocated GPU memory (CUDA), in GiB."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20  # KiB on Linux


def paper_target(name: str, num_classes: int, device: torch.device) -> Target:
    """The zoo entry ``name`` built at ``paper`` (untrained or pretrained weights), with a
    random unit gallery when it is open-set."""
    entry = get_entry(name)
    if isinstance(entry, PretrainedEntry):
        target: Target = entry.build(num_classes)
    else:
        target = build_target(entry.resolve("paper"), num_classes)
    if isinstance(target, OpenSetTarget):
        gen = torch.Generator().manual_seed(SEED)
        target.enrol(torch.randn(num_classes, target.feature_dim, generator=gen))
    return target.to(device)


def random_images(n: int, seed: int) -> torch.Tensor:
    """``n`` uint8 noise images at the paper world's resolution."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, RESOLUTION, RESOLUTION), dtype=torch.uint8,
                         generator=gen)


def aux_split() -> Split:
    labels = torch.arange(AUX_IMAGES) // 3
    return Split("aux", random_images(AUX_IMAGES, SEED), labels, labels.clone())


def _millions(module: nn.Module) -> float:
    return sum(p.numel() for p in module.parameters()) / 1e6


def prior_sizes(cache_root: Path) -> dict[str, float]:
    """Millions of weights (state-dict entries) of every prior that ``prepare`` cached."""
    sizes = {}
    for path in sorted(cache_root.glob("*/*/weights.pt")):
        state = torch.load(path, map_location="cpu", weights_only=True)
        sizes[path.parent.parent.name] = round(sum(v.numel() for v in state.values()) / 1e6, 1)
    return sizes


def _per_step(loop_s: float, loops: Mapping[str, list[float]], steps: int | None) -> float:
    count = steps or sum(len(v) for v in loops.values())
    return loop_s / count if count else math.nan


def _check_images(images: torch.Tensor, expected: int) -> str:
    if images.ndim != 4 or tuple(images.shape[:2]) != (expected, 3):
        raise ShapeCheckError(f"invert returned {tuple(images.shape)}; expected "
                              f"{expected}×3×H×W")
    if bool(images.min() < 0) or bool(images.max() > 1):
        raise ShapeCheckError("invert returned images outside [0, 1]")
    return "×".join(str(s) for s in images.shape)


def check_attack(name: str, target_name: str, device: torch.device,
                 cache_root: Path, row: dict[str, Any]) -> None:
    """Fill ``row`` with the attack check's numbers (filled as far as it got if it raises)."""
    cls = ATTACKS.get(name)
    plan = PLANS.get(name, Plan())
    attack: Attack = cls(cls.Config.resolve("paper", plan.overrides))
    classes = plan.classes or PAPER_WORLD.private_identities
    row.update(target=target_name, classes=classes, overrides=dict(plan.overrides),
               planned=name in PLANS, phase="setup")
    target = paper_target(target_name, classes, device)
    ledger = QueryLedger()
    aux_fingerprint = fingerprint = "paper-shapes:similar"
    if attack.spec.target_dependent_prior:
        fingerprint += f":{target_name}"
    ctx = TimedContext(aux=aux_split(), cache=Cache(cache_root), device=device, seed=SEED,
                       ledger=ledger, target=view_for(attack.spec.access, target, ledger),
                       preset="paper", data_fingerprint=fingerprint,
                       aux_fingerprint=aux_fingerprint, show_progress=False)
    labels = torch.arange(IDENTITIES).repeat_interleave(SAMPLES)
    torch.manual_seed(SEED)
    row["phase"] = "prepare"
    start = _now(device)
    attack.prepare(ctx)
    row["prepare_s"] = _now(device) - start
    row["prepare_loops"], ctx.loops = ctx.loops, {}
    loop_s = sum(map(sum, row["prepare_loops"].values()))
    row["prepare_s_per_step"] = _per_step(loop_s, row["prepare_loops"], plan.prepare_steps)
    row["networks_m"] = prior_sizes(cache_root)
    torch.manual_seed(SEED)
    row["phase"] = "invert"
    start = _now(device)
    with ledger.scope(labels):
        images = attack.invert(ctx.target, labels.to(device), ctx).detach().float().cpu()
        row["invert_s"] = _now(device) - start
        row["output"] = _check_images(images, len(labels))
        row["phase"] = "select"
        selected = attack.select(ctx.target, images, labels, ctx)
    row["select_s"] = _now(device) - start - row["invert_s"]
    if len(selected) != IDENTITIES:
        raise ShapeCheckError(f"select returned {len(selected)} indices for {IDENTITIES} "
                              "identities")
    row["invert_loops"] = ctx.loops
    loop_s = sum(map(sum, ctx.loops.values())) if ctx.loops else row["invert_s"]
    row["invert_s_per_step"] = _per_step(loop_s, ctx.loops, plan.invert_steps)
    row["queries"] = {kind: ledger.total(kind) for kind in ledger.KINDS}
    del row["phase"]


def check_target(name: str, device: torch.device, row: dict[str, Any]) -> None:
    """Fill ``row`` with one SGD step of the entry's training loss (batch of 4; pretrained
    models: none) and one forward at ``paper``."""
    entry = get_entry(name)
    private, public = PAPER_WORLD.private_identities, PAPER_WORLD.public_identities
    row["phase"] = "build"
    target = paper_target(name, private, device)
    row["networks_m"] = {name: round(_millions(target), 1)}
    images = random_images(TARGET_BATCH, SEED + 1).float().div(255).to(device)
    labels = torch.tensor([0, 0, 1, 1], device=device)  # P×K = 2×2, as triplet batches need
    if not isinstance(entry, PretrainedEntry):
        cfg = entry.resolve("paper")
        closed = cfg.kind == "closed" or entry.parent is not None  # fine-tuning: private ids
        objective = build_objective(cfg, private if closed else public).to(device)
        params = [*target.parameters(), *objective.parameters()]
        optimiser = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                                    weight_decay=cfg.weight_decay)
        target.train()
        row["phase"] = "SGD step"
        start = _now(device)
        loss = objective(target, images, labels)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(params, GRAD_CLIP)
        optimiser.step()
        row["train_step_s"] = _now(device) - start
        row["loss"] = cfg.loss
    target.eval()
    row["phase"] = "forward"
    start = _now(device)
    with torch.no_grad():
        logits, features = target(images)
    row["forward_s"] = _now(device) - start
    row["output"] = f"logits {tuple(logits.shape)}, features {tuple(features.shape)}"
    if not torch.isfinite(F.normalize(features, dim=1)).all():
        raise ShapeCheckError(f"{name} returned non-finite features")
    del row["phase"]
