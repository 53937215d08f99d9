"""BiDO — Peng et al., "Bilateral Dependency Optimization: Defending Against Model-inversion
Attacks", KDD 2022, Eq. (4): CE + λx·Σⱼ HSIC(X, Zⱼ) − λy·Σⱼ HSIC(Zⱼ, Y).

Zⱼ are the outputs of the backbone's four residual stages (ours: the paper's VGG blocks have
no IR-152 counterpart in the official code), X the input images, Y one-hot labels; kernels are
Gaussian with variance 2σ²·dim (σ = 5, the official ``hsic.py``). The official code uses the
HSIC-bottleneck "normalised CCA" estimate, whose scale grows with the batch size (up to m), so
(λx, λy) = (0.05, 0.5) would let the HSIC terms outweigh the cross-entropy at any batch; ours
normalises HSIC as kernel alignment, HSIC(A,B)/√(HSIC(A,A)·HSIC(B,B)) ∈ [0, 1], so the
paper's λs keep their relative weight. Defaults: the paper's CelebA (λx, λy) = (0.05, 0.5)
(the official ``train_HSIC.py`` ships (0, 0), which defends nothing).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mibench.config import Config, param
from mibench.registry import DEFENSES
from mibench.targets.architectures import Backbone
from mibench.targets.defenses.base import Defense, DefenseObjective
from mibench.targets.defenses.stages import stage_blocks


@dataclass
class BiDOConfig(Config):
    lambda_x: float = param(0.05, "weight λx of HSIC(X, Z) (minimised)", ge=0.0, source="paper")
    lambda_y: float = param(0.5, "weight λy of HSIC(Z, Y) (maximised)", ge=0.0, source="paper")
    sigma: float = param(5.0, "Gaussian kernel width σ", gt=0.0, source="code")


def centred_gram(x: Tensor, sigma: float) -> Tensor:
    """H·K·H of the Gaussian kernel exp(−‖a−b‖² / (2σ²·dim)) over the rows of ``x``."""
    x = x.flatten(1).float()
    norms = x.pow(2).sum(1)  # ‖a−b‖² = ‖a‖² + ‖b‖² − 2a·b: cdist's backward is slow on CPU
    squared = (norms[:, None] + norms[None, :] - 2.0 * x @ x.T).clamp_min(0.0)
    kernel = torch.exp(-squared / (2.0 * sigma * sigma * x.shape[1]))
    kernel = kernel - kernel.mean(0, keepdim=True)
    return kernel - kernel.mean(1, keepdim=True)


def hsic(a: Tensor, b: Tensor, sigma: float = 5.0) -> Tensor:
    """Biased HSIC estimate tr(K̃ₐ K̃_b)/(m−1)² (Gretton et al., 2005)."""
    m = a.shape[0]
    return (centred_gram(a, sigma) * centred_gram(b, sigma)).sum() / (m - 1) ** 2


def normalised_hsic(a: Tensor, b: Tensor, sigma: float = 5.0) -> Tensor:
    """HSIC as kernel alignment: 0 for independent samples (as m grows), 1 for identical."""
    return alignment(centred_gram(a, sigma), centred_gram(b, sigma))


def alignment(ka: Tensor, kb: Tensor) -> Tensor:
    """Normalised HSIC of two centred Gram matrices."""
    return (ka * kb).sum() / (ka.norm() * kb.norm()).clamp_min(1e-12)


class BiDOObjective(DefenseObjective):
    def __init__(self, base: nn.Module, blocks: list[nn.Module], config: BiDOConfig,
                 num_classes: int) -> None:
        super().__init__(base)
        self.config, self.num_classes = config, num_classes
        self.hidden: list[Tensor] = []
        for block in blocks:
            block.register_forward_hook(self._record)

    def _record(self, module: nn.Module, inputs: object, output: Tensor) -> None:
        if self.training and torch.is_grad_enabled():
            self.hidden.append(output)

    def forward(self, target: nn.Module, images: Tensor, labels: Tensor) -> Tensor:
        self.hidden = []
        loss = self.base(target, images, labels)
        hidden, self.hidden = self.hidden, []
        y = F.one_hot(labels, self.num_classes).float()
        sigma = self.config.sigma
        kx, ky = centred_gram(images, sigma), centred_gram(y, sigma)
        grams = [centred_gram(z, sigma) for z in hidden]  # each layer's Gram once
        hx = sum(alignment(kx, kz) for kz in grams)
        hy = sum(alignment(kz, ky) for kz in grams)
        return loss + self.config.lambda_x * hx - self.config.lambda_y * hy


@DEFENSES.register("bido")
class BiDO(Defense):
    name = "bido"
    paper = "Peng et al., KDD 2022: CE + λx·HSIC(X,Z) − λy·HSIC(Z,Y) over hidden layers"
    Config = BiDOConfig
    strength = "lambda_x"
    sweep = (0.02, 0.05, 0.1)

    def objective(self, base: nn.Module, target: nn.Module, num_classes: int) -> nn.Module:
        last = [stage[-1] for stage in stage_blocks(target.backbone)]
        return BiDOObjective(base, last, self.config, num_classes)
