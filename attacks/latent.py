"""The scaffold of an optimisation attack (issue 16): labels in chunks, each chunk's queries
booked to its identities, a search seeded by the chunk's offset, then rendering on the CPU.

An attack file keeps its paper's algorithm — the start point, the loss, the update rule — and
hands the bookkeeping to two helpers:

- :func:`invert_in_chunks` splits the requested labels into chunks of ``batch_size``, runs the
  attack's search on each chunk inside ``ctx.ledger.scope(chunk)`` with a generator seeded at
  the run seed plus the chunk's offset, renders the result without gradients and gathers the
  images on the CPU;
- :func:`descend` runs ``steps`` optimiser steps on the sum of the per-sample losses (zero
  grad, backward, step) with a progress bar and an optional per-step callback (a learning-rate
  schedule, a projection); the loss is computed under the run's autocast and stepped through
  its loss scaler (:mod:`mibench.precision`). Summing, not averaging, makes each latent's
  gradient its own sample's, whatever the batch it is optimised in (issue 18.4).

:func:`show_losses` puts loss values on a training loop's progress bar every
:data:`SHOW_EVERY` steps: each value read is a host-device sync, so not every step.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import torch

from mibench import precision
from mibench.attack import AttackContext

SHOW_EVERY = 50


class Chunk(NamedTuple):
    """One chunk of the requested labels, as a search sees it."""

    labels: torch.Tensor
    """The chunk's labels, on the attack's device."""
    rows: slice
    """Where the chunk stands in the requested labels (to slice per-sample inputs)."""
    generator: torch.Generator
    """Seeded with the run seed plus ``rows.start``: a chunk's draws do not depend on the
    chunks before it."""


def invert_in_chunks(ctx: AttackContext, labels: torch.Tensor, batch_size: int,
                     search: Callable[[Chunk], torch.Tensor],
                     render: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
                     ) -> torch.Tensor:
    """One image per entry of ``labels``: ``render(search(chunk), chunk.labels)`` per chunk.

    ``search`` runs inside the ledger scope of its chunk, so every query it makes is booked to
    the chunk's identities; ``render`` (default: the search's result is the image) runs without
    gradients and must not query the target. Images come back on the CPU, in label order."""
    out = []
    for start in range(0, len(labels), batch_size):
        rows = slice(start, start + batch_size)
        chunk = Chunk(labels[rows].to(ctx.device), rows, ctx.generator(start))
        with ctx.ledger.scope(chunk.labels):
            found = search(chunk)
        with torch.no_grad():
            images = found if render is None else render(found, chunk.labels)
        out.append(images.detach().cpu())
    return torch.cat(out)


def descend(optimiser: torch.optim.Optimizer, loss: Callable[[], torch.Tensor], steps: int,
            ctx: AttackContext, desc: str,
            after_step: Callable[[], object] | None = None) -> None:
    """``steps`` times: ``loss()``, zero the gradients, back-propagate the sum of its values,
    ``optimiser.step()``, then ``after_step()`` if given. The optimiser holds the latents being
    optimised.

    ``loss()`` returns one loss per sample (or a scalar). The sum, not the batch mean, is
    stepped: a latent's gradient is then the gradient of its own sample's loss and does not
    shrink as 1/batch, so a run's numbers do not depend on how its samples are chunked.
    Adam (PLG-MI, KEDMI, FMI, PPA, IF-GMI) is invariant to the gradient's scale, so for it the
    sum is the official batch mean up to Adam's ε; GMI's SGD calibrates its step instead.

    ``loss()`` runs under the run's autocast: the generators and targets of every caller (GMI,
    FMI, PLG-MI, PPA, IF-GMI) take reduced-precision activations, their identity losses are
    autocast to float32 (cross-entropy, log-softmax) and the latents stay float32 leaves."""
    scaler = precision.LossScaler(ctx.device)
    for _ in ctx.progress(range(steps), desc=desc, unit="it", leave=False):
        with precision.autocast(ctx.device):
            value = loss().sum()
        optimiser.zero_grad(set_to_none=True)
        scaler.step(value, optimiser)
        if after_step is not None:
            after_step()


def show_losses(bar: Any, step: int, **losses: torch.Tensor) -> None:
    """Show ``losses`` on ``bar`` (a tqdm bar) at every :data:`SHOW_EVERY`-th ``step``."""
    if step % SHOW_EVERY == 0:
        bar.set_postfix({name: f"{value.item():.2f}" for name, value in losses.items()})
