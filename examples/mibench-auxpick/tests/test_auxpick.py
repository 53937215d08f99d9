"""auxpick on mibench's toy world (mibench.testing): run `pytest tests` after installing."""

import torch
from mibench.testing import ColourTarget, colour_aux, toy_context

from mibench_auxpick import AuxPick


def test_returns_the_aux_images_the_target_scores_highest(tmp_path):
    ctx = toy_context(access=AuxPick.spec.access, cache=tmp_path, aux=colour_aux(48))
    attack = AuxPick(AuxPick.Config.resolve("smoke"))
    attack.prepare(ctx)
    assert ctx.ledger.counts["forward"] == {"prepare": 48}    # each aux image scored once

    images = attack.invert(ctx.target, torch.tensor([0, 0, 1, 2]), ctx)
    aux = ctx.aux.float_images()
    best = ColourTarget()(aux)[0].softmax(1).topk(2, dim=0).indices   # [rank, identity]
    picked = torch.stack([best[0, 0], best[1, 0], best[0, 1], best[0, 2]])
    assert torch.equal(images, aux[picked])
