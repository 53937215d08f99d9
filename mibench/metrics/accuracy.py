"""Top-k identification accuracy of the target and the evaluation model.

Convention (attacks.md §A.4; PLG-MI ``reconstruct.py``, Diff-MI ``calc_acc_std``, toolbox
``metrics/base.py``): every generated image counts; an image is correct at k when its intended
identity is among the model's k highest logits. Acc@5 is the top-5 accuracy, not GMI's "any of
5 restarts" reading.
"""

from __future__ import annotations

import torch

from mibench.metrics.base import MetricUnavailable, metric
from mibench.metrics.context import EvalContext


def top_k_accuracy(logits: torch.Tensor, labels: torch.Tensor, k: int) -> float:
    """Fraction of rows whose label is among the ``k`` largest logits."""
    if logits.shape[1] < k:
        raise MetricUnavailable(f"top-{k} accuracy needs at least {k} classes; "
                                f"the model has {logits.shape[1]}")
    top = logits.topk(k, dim=1).indices
    return (top == labels.to(top.device).unsqueeze(1)).any(dim=1).float().mean().item()


@metric("target_acc1", "higher", "Top-1 accuracy of the target model on the generated images",
        needs=("target",))
def target_acc1(ctx: EvalContext) -> float:
    return top_k_accuracy(ctx.target_logits, ctx.labels, 1)


@metric("target_acc5", "higher", "Top-5 accuracy of the target model on the generated images",
        needs=("target",))
def target_acc5(ctx: EvalContext) -> float:
    return top_k_accuracy(ctx.target_logits, ctx.labels, 5)


@metric("eval_acc1", "higher",
        "Top-1 accuracy of the independent evaluation model on the generated images",
        needs=("eval_model",))
def eval_acc1(ctx: EvalContext) -> float:
    return top_k_accuracy(ctx.eval_logits, ctx.labels, 1)


@metric("eval_acc5", "higher",
        "Top-5 accuracy of the independent evaluation model on the generated images",
        needs=("eval_model",))
def eval_acc5(ctx: EvalContext) -> float:
    return top_k_accuracy(ctx.eval_logits, ctx.labels, 5)


def eval2_logits(ctx: EvalContext) -> torch.Tensor:
    """The second evaluation model's logits; unavailable when the run has none."""
    if ctx.private.eval2_model is None:
        raise MetricUnavailable("this run has no second evaluation model "
                                "(run.eval2_model is 'none')")
    return ctx.eval2_logits


def top1_hits(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """1.0 where the label is the row's highest logit, else 0.0 (per image)."""
    return (logits.argmax(dim=1) == labels.to(logits.device)).float()


@metric("eval2_acc1", "higher",
        "Top-1 accuracy of the second, independent evaluation model (run.eval2_model)",
        needs=("eval2_model",))
def eval2_acc1(ctx: EvalContext) -> float:
    return top_k_accuracy(eval2_logits(ctx), ctx.labels, 1)


@metric("eval2_acc5", "higher",
        "Top-5 accuracy of the second, independent evaluation model (run.eval2_model)",
        needs=("eval2_model",))
def eval2_acc5(ctx: EvalContext) -> float:
    return top_k_accuracy(eval2_logits(ctx), ctx.labels, 5)


@metric("transfer_gap", "lower",
        "eval_acc1 - eval2_acc1: accuracy the first evaluator grants and the second does not",
        needs=("eval_model", "eval2_model"))
def transfer_gap(ctx: EvalContext) -> float:
    eval2 = eval2_logits(ctx)
    gap = top1_hits(ctx.eval_logits, ctx.labels) - top1_hits(eval2, ctx.labels).to(ctx.device)
    return gap.mean().item()
