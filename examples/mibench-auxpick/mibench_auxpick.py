"""mibench-auxpick: return the auxiliary images that the target scores highest per identity."""

from dataclasses import dataclass

import torch

from mibench.attack import Attack, AttackSpec
from mibench.config import Config, param
from mibench.registry import ATTACKS


@dataclass
class AuxPickConfig(Config):
    pool: int = param(1024, "aux images scored once per cell", ge=1)
    batch_size: int = param(128, "images per query", ge=1)

    presets = {"smoke": {"pool": 64}}


@ATTACKS.register("auxpick")
class AuxPick(Attack):
    """A generator-free baseline: the best-scoring auxiliary images, by target probability."""

    spec = AttackSpec(name="auxpick", title="Aux image picking", paper="mibench example",
                      year=2026, access="scores", prior="none")
    Config = AuxPickConfig

    def prepare(self, ctx):
        pick = torch.randperm(len(ctx.aux), generator=ctx.generator())[: self.config.pool]
        self.images = ctx.aux.float_images(pick)
        step = self.config.batch_size
        self.probs = torch.cat([ctx.target.probs(self.images[i:i + step].to(ctx.device)).cpu()
                                for i in range(0, len(self.images), step)])

    def invert(self, target, labels, ctx):
        labels = labels.cpu()
        rank = torch.zeros_like(labels)
        for label in labels.unique():
            rank[labels == label] = torch.arange(int((labels == label).sum()))
        order = self.probs[:, labels].argsort(dim=0, descending=True)
        return self.images[order[rank % len(order), torch.arange(len(labels))]]
