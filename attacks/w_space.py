"""The pipeline PPA and IF-GMI share (attacks.md §2.3, §6.3): PPA's initial selection of
candidate w's per identity from a StyleGAN prior, then each chunk of candidates refined by the
attack."""

from __future__ import annotations

import torch

from mibench.access import TargetView
from mibench.attack import Attack, AttackContext
from mibench.attacks.latent import Chunk, invert_in_chunks
from mibench.attacks.priors.stylegan import candidate_search


class WSpaceAttack(Attack):
    """Base of the W-space attacks: ``prepare`` sets ``self.prior`` (the StyleGAN), subclasses
    implement :meth:`refine` (the paper's optimisation of a chunk's candidates) and may override
    :meth:`render`. ``Config`` is a ``CandidateSearchConfig``."""

    def invert(self, target: TargetView, labels: torch.Tensor,
               ctx: AttackContext) -> torch.Tensor:
        ws = candidate_search(self.prior, target, labels, self.config, ctx)
        return invert_in_chunks(ctx, labels, self.config.batch_size,
                                lambda chunk: self.refine(target, ws[chunk.rows], chunk, ctx),
                                self.render)

    def refine(self, target: TargetView, w: torch.Tensor, chunk: Chunk,
               ctx: AttackContext) -> torch.Tensor:
        """What :meth:`render` turns into the chunk's images, from its candidates ``w``."""
        raise NotImplementedError

    def render(self, refined: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Images of :meth:`refine`'s result (run without gradients). Default: it is the
        images."""
        return refined
