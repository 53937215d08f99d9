"""PPA — Plug & Play Attacks (Struppek et al., ICML 2022), attacks.md §2.

Prior: the StyleGAN prior (``priors/stylegan.py``), trained once on the aux split and shared
with IF-GMI; target-agnostic (PPA itself plugs in NVLabs' pre-trained FFHQ StyleGAN2).
Defaults follow PPA's CelebA attack, ``configs/attacking/CelebA_FFHQ.yaml`` (our private
identities are CelebA-like faces): search 5,000, 70 Adam steps, no learning-rate schedule.
The FaceScrub attack (``default_attacking.yaml``) is ``--set search_space=2000 iterations=50
lr_milestones=30,40``.

1. Initial selection (§2.3.1): ``search_space`` seeded z's are mapped with truncation ψ on the
   first ``truncation_cutoff`` style inputs and scored by the target's softmax averaged over
   {x, flip(x)}; each identity keeps its k best distinct w's. k is the run's ``samples`` per
   identity: it plays PPA's ``num_candidates`` (200).
2. Optimisation (§2.3.2): a single w per candidate (the first style input, broadcast to all,
   ``single_w``) is optimised with Adam (lr 0.005, betas (0.1, 0.1), ``iterations`` steps,
   optional MultiStepLR at ``lr_milestones``) on the Poincaré loss of the target logits of
   centre-cropped, RandomResizedCrop(0.9–1.0)-augmented images. No discriminator term (PPA's
   weight 0). Returned images are centre-cropped like the target saw them and, where larger,
   resized to the target's resolution (PPA's Resize 224 after the crop;
   ``w_space.fit_to_target``). The loss runs under the run's autocast
   (``mibench/precision.py``), w stays fp32.
3. Final selection (§2.3.3) is ``select``: the identity's softmax averaged over ``final_draws``
   random RRC(0.5–0.9, ratio 0.8–1.2) + flip(0.5) augmentations; PPA keeps the best 50 of 200,
   the protocol's selected set keeps the best one.

Image sets: PPA's ``attack.py`` evaluates Acc@1/@5 twice, "unfiltered" on every optimised
candidate (200 per identity) and "filtered" on the final selection's 50; FID, PRDC and the
feature distances only on the filtered set. Our ``all`` set is PPA's unfiltered set (every
optimised candidate, ``samples`` per identity, before the final selection); ``selected`` is
the filtered set at one image per identity.

Queries: the search's 2·``search_space`` forward queries are shared by all identities (the
ledger records them as unattributed); each candidate then costs ``iterations`` gradient queries
and ``final_draws`` forward queries.
``crop`` is PPA's CenterCrop 800 of FFHQ's 1024 px, which frames the face like CelebA; the
``paper`` preset keeps the fraction at our 128 px prior (a 100 px crop, resized to the target's
112 px). Our prior trains on aux images framed like the private ones, so ``mini`` and ``smoke``
do not crop. ``mini`` scales the CelebA attack to 500 z's and 40 steps.

Pretrained generator: ``stylegan_checkpoint`` set to NVLabs' stylegan2-ada-pytorch pickle
(PPA's own ``ffhq.pkl``) or a rosinality ``.pt`` replaces the trained prior by that generator
(``priors/stylegan_import.py``): the pickle is read without running any of its code, the
weights drive StyleGAN2's exact synthesis (FIR resampling, constant noise, ``conv_clamp``,
images (x + 1)/2), and resolution, z/w sizes and ``num_ws`` come from the file, so the prior's
size fields are ignored. Use it with ``crop`` 0.78125 (the paper preset) on FFHQ's 1024 px.

Remaining deviations from the official code:
- Prior: without ``stylegan_checkpoint``, a StyleGAN2 trained on the aux split (128 px at
  ``paper``), not NVLabs' FFHQ 1024 px generator; no such generator exists for our world.
- Candidates: the run's ``samples`` (16) per identity instead of 200, and the final selection
  keeps 1 instead of 50: the protocol's sizes, shared by every attack.
- Images reach the target at its resolution (112 px at ``paper``) instead of 224 px, and the
  search scores them without PPA's clip to [−1, 1] (our trained prior's sigmoid images lie in
  [0, 1]); the imported generator's images are clamped to [0, 1] also while optimising, where
  PPA feeds the unclipped synthesis (``clip: false``) to the target.
- Candidates are optimised in batches of ``batch_size`` (64) instead of 25 per GPU; the loss
  is summed per candidate, not averaged (``latent.descend``, issue 18.4), so each candidate's
  update is independent of the batch; with Adam this is the official batch mean up to its ε.
- Random numbers (search z's, crops, flips) come from our seeded generators, not PPA's seed 42.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

import torch

from mibench import precision
from mibench.access import TargetView
from mibench.attack import FORWARD_BATCH, AttackContext, AttackSpec
from mibench.attacks.augment import Augment, center_crop
from mibench.attacks.latent import Chunk, descend
from mibench.attacks.losses import poincare
from mibench.attacks.priors.stylegan import SEARCH_SEED, CandidateSearchConfig
from mibench.attacks.priors.stylegan_import import load_prior
from mibench.attacks.w_space import WSpaceAttack
from mibench.config import Config, param
from mibench.registry import ATTACKS
from mibench.selection import augmented_confidence, best_per_identity


@dataclass
class PPAConfig(CandidateSearchConfig):
    """PPA hyper-parameters; defaults from configs/attacking/CelebA_FFHQ.yaml (the CelebA
    attack: search 5,000, 70 steps, no learning-rate schedule) and, where it is silent,
    default_attacking.yaml."""

    search_space: int = param(5000, "z's scored in the initial selection (CelebA_FFHQ.yaml; "
                              "FaceScrub's default_attacking.yaml: 2,000)", ge=1)
    iterations: int = param(70, "Adam steps per candidate (CelebA_FFHQ.yaml; FaceScrub: 50)",
                            ge=1)
    lr: float = param(0.005, "Adam learning rate on w", gt=0)
    betas: tuple[float, ...] = param((0.1, 0.1), "Adam betas")
    lr_milestones: tuple[int, ...] = param((), "steps where the learning rate drops (none in "
                                           "CelebA_FFHQ.yaml; FaceScrub: 30, 40)")
    lr_gamma: float = param(0.1, "learning-rate factor at each milestone", gt=0, le=1)
    opt_scale: tuple[float, ...] = param((0.9, 1.0), "RandomResizedCrop area range (opt.)")
    final_draws: int = param(100, "random augmentations of the final selection", ge=1)
    final_scale: tuple[float, ...] = param((0.5, 0.9), "RandomResizedCrop area range (final)")
    final_ratio: tuple[float, ...] = param((0.8, 1.2), "RandomResizedCrop aspect range (final)")
    final_flip: float = param(0.5, "horizontal-flip probability (final)", ge=0, le=1)

    presets: ClassVar[Mapping[str, Mapping[str, Any]]] = {
        "smoke": {**CandidateSearchConfig.presets["smoke"], "iterations": 3,
                  "lr_milestones": (2,), "final_draws": 2},
        "mini": {**CandidateSearchConfig.presets["mini"], "iterations": 40, "final_draws": 20},
    }


@ATTACKS.register("ppa")
class PPA(WSpaceAttack):
    """Plug & Play Attacks: candidate search, augmented Poincaré optimisation of w, selection."""

    spec = AttackSpec(name="ppa", title="Plug & Play Attacks (PPA)",
                      paper="Struppek et al., ICML", year=2022, access="whitebox",
                      prior="StyleGAN (W space)")
    Config: ClassVar[type[Config]] = PPAConfig

    def prepare(self, ctx: AttackContext) -> None:
        self.prior = load_prior(ctx, self.config)

    def refine(self, target: TargetView, w: torch.Tensor, chunk: Chunk,
               ctx: AttackContext) -> torch.Tensor:
        """Adam on w under random crops, Poincaré loss (PPA attacks/optimize.py)."""
        cfg = self.config
        w = w.clone().requires_grad_(True)
        optimiser = torch.optim.Adam([w], lr=cfg.lr, betas=tuple(cfg.betas))
        schedule = torch.optim.lr_scheduler.MultiStepLR(optimiser, list(cfg.lr_milestones),
                                                        cfg.lr_gamma)
        augment = Augment(crop=cfg.crop, scale=tuple(cfg.opt_scale))

        def loss() -> torch.Tensor:
            with precision.autocast(ctx.device):
                logits = target.logits(augment(self.prior.render(w), chunk.generator))
            return poincare(logits.float(), chunk.labels)

        descend(optimiser, loss, cfg.iterations, ctx, "PPA", after_step=schedule.step)
        return w.detach()

    def render(self, refined: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Centre-cropped like the target saw them."""
        return center_crop(self.prior.render(refined), self.config.crop)

    def select(self, target: TargetView, images: torch.Tensor, labels: torch.Tensor,
               ctx: AttackContext) -> torch.Tensor:
        """PPA's final selection: mean confidence over random crops and flips, best kept.

        Runs over ``FORWARD_BATCH`` images at a time (only those on the device), each batch's
        draws seeded by its offset."""
        cfg = self.config
        augment = Augment(scale=tuple(cfg.final_scale), ratio=tuple(cfg.final_ratio),
                          flip=cfg.final_flip)

        def scores(start: int) -> torch.Tensor:
            gen = ctx.generator(SEARCH_SEED + 1 + start)
            rows = slice(start, start + FORWARD_BATCH)
            return augmented_confidence(target, images[rows].to(ctx.device),
                                        labels[rows].to(ctx.device), lambda x: augment(x, gen),
                                        cfg.final_draws)

        return best_per_identity(
            torch.cat([scores(start) for start in range(0, len(images), FORWARD_BATCH)]),
            labels)
