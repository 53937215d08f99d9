"""The pipeline PPA and IF-GMI share (attacks.md §2.3, §6.3): PPA's initial selection of
candidate w's per identity from a StyleGAN prior, then each chunk of candidates refined by the
attack, its images returned at (at most) the target's resolution."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from mibench.access import TargetView
from mibench.attack import Attack, AttackContext
from mibench.attacks.latent import Chunk, invert_in_chunks
from mibench.attacks.priors.stylegan import candidate_search


def fit_to_target(images: torch.Tensor, resolution: int) -> torch.Tensor:
    """Images larger than the target's input side down-sampled (bilinear, antialiased) to it,
    as PPA's pipeline resizes its crops before the target (CenterCrop 800 → Resize 224,
    attacks.md §2); smaller ones are returned as they are (the target up-samples its inputs
    itself, and inflating them would add no information)."""
    if images.shape[-1] <= resolution:
        return images
    resized = F.interpolate(images, size=(resolution, resolution), mode="bilinear",
                            antialias=True, align_corners=False)
    return resized.clamp(0, 1)


class WSpaceAttack(Attack):
    """Base of the W-space attacks: ``prepare`` sets ``self.prior`` (the StyleGAN), subclasses
    implement :meth:`refine` (the paper's optimisation of a chunk's candidates) and may override
    :meth:`render`. ``Config`` is a ``CandidateSearchConfig``. ``invert`` returns the rendered
    images at most at the target's resolution (:func:`fit_to_target`), so a large prior's
    outputs do not pile up at its size.

    A batch of ``batch_size`` candidates is optimised in ``parts`` parts one after the other.
    This is gradient accumulation: each candidate's loss depends on its own latents only, and
    Adam, the L1 projections and the schedules act element by element, so a part's update of
    its candidates is the whole batch's. The one difference is the 1/batch factor of the mean
    loss, which Adam normalises away (up to its ε), and each part draws its augmentations from
    its own seeded generator."""

    def invert(self, target: TargetView, labels: torch.Tensor,
               ctx: AttackContext) -> torch.Tensor:
        ws = candidate_search(self.prior, target, labels, self.config, ctx)
        part = math.ceil(self.config.batch_size / self.config.parts)
        return invert_in_chunks(
            ctx, labels, part,
            lambda chunk: self.refine(target, ws[chunk.rows], chunk, ctx),
            lambda refined, chunk_labels: fit_to_target(self.render(refined, chunk_labels),
                                                        target.resolution))

    def refine(self, target: TargetView, w: torch.Tensor, chunk: Chunk,
               ctx: AttackContext) -> torch.Tensor:
        """What :meth:`render` turns into the chunk's images, from its candidates ``w``."""
        raise NotImplementedError

    def render(self, refined: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Images of :meth:`refine`'s result (run without gradients). Default: it is the
        images."""
        return refined
