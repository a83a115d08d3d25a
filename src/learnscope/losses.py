"""Per-example losses and correctness, for every kind of task target.

- classification: targets [S, B] class indices; cross-entropy per example
  (logits outside an example's class group excluded, for task-incremental
  streams), of the softmax or, with `recipe.loss: stablemax`, of StableMax;
- sequence: targets [S, B, T] next-token indices, IGNORE where a position is
  not scored (a prompt, padding); the per-example loss is the mean
  cross-entropy over its scored positions;
- regression: targets [S, B, out]; mean squared error per example.

The training loss of a seed is the mean of its per-example losses; probes,
membership inference and unlearning objectives read the per-example values.

StableMax ("Grokking at the Edge of Numerical Stability", Prieto et al.)
replaces exp with s(x) = x + 1 for x >= 0 and 1 / (1 - x) for x < 0:
p_i = s(x_i) / sum_j s(x_j). It grows linearly, not exponentially, so a
confident prediction needs far larger logits before p_target rounds to 1
(Softmax Collapse). As the authors' code does, it is computed in float64
from the logits; the loss is cast back to the logits' dtype (the gradient
is the float64 one, cast at the logits).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from learnscope.errors import SpecError
from learnscope.spec import LossKind
from learnscope.tasks.base import TaskInfo

IGNORE = -100  # a sequence position that is not scored
# CPU log-softmax over fewer than 16 classes takes a scalar path ~8x slower per element;
# columns of -inf have probability 0 and gradient 0, so padding to 16 keeps the loss exact
SOFTMAX_MIN_WIDTH = 16


def example_losses(info: TaskInfo, outputs: torch.Tensor, targets: torch.Tensor,
                   loss: LossKind = "softmax") -> torch.Tensor:
    """[S, B]: the loss of every example. `loss`: the recipe's choice of the
    cross-entropy's normalization (classification and sequence tasks)."""
    S, B = targets.shape[:2]
    if not info.is_classification:
        if loss == "stablemax":
            raise SpecError("recipe.loss", f"{loss} applies to classification and sequence tasks; "
                            "this task is regression (mse); valid: softmax, mse")
        return (outputs - targets).square().reshape(S, B, -1).mean(-1)
    flat = _cross_entropy(info, outputs, targets, loss)
    if not info.sequence:
        return flat.view(S, B)
    scored = (targets != IGNORE).reshape(S, B, -1)
    return flat.view(S, B, -1).sum(-1) / scored.sum(-1).clamp(min=1)


def token_losses(info: TaskInfo, outputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """([S, B, T], [S, B, T]): the cross-entropy of every position of every
    example (its negated log-probability of the target), 0 where not scored,
    and which positions are scored; T = 1 for one label per example. For
    classification and sequence tasks."""
    S, B = targets.shape[:2]
    if not info.is_classification:
        raise ValueError("token_losses needs a classification or sequence task; this task is regression (mse)")
    losses = _cross_entropy(info, outputs, targets).view(S, B, -1)
    return losses, (targets != IGNORE).reshape(S, B, -1)


def _cross_entropy(info: TaskInfo, outputs: torch.Tensor, targets: torch.Tensor,
                   loss: LossKind = "softmax") -> torch.Tensor:
    """Per scored target, flat: [S · B] or [S · B · T], 0 at IGNORE."""
    outputs = info.restrict_outputs(outputs, targets)
    if loss == "mse":
        return squared_error_to_one_hot(outputs.reshape(-1, outputs.shape[-1]), targets.reshape(-1))
    if loss == "stablemax":
        return stablemax_cross_entropy(outputs.reshape(-1, outputs.shape[-1]), targets.reshape(-1))
    classes = outputs.shape[-1]
    if classes < SOFTMAX_MIN_WIDTH:
        outputs = F.pad(outputs, (0, SOFTMAX_MIN_WIDTH - classes), value=float("-inf"))
    return F.cross_entropy(outputs.reshape(-1, outputs.shape[-1]), targets.reshape(-1), reduction="none",
                           ignore_index=IGNORE)


def _stablemax_parts(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """s(x) = (1 + max(x, 0)) / d with d = 1 - min(x, 0): x + 1 for x >= 0 and
    1 / (1 - x) below (0 at -inf), and d, whose 1 / d^2 is s's slope. Neither
    branch divides by zero (d >= 1), so no gradient meets 0 · inf; the authors
    add 1e-30 to the denominator for this, below float64's resolution at 1."""
    d = x.clamp(max=0).neg_().add_(1)
    return x.clamp(min=0).add_(1).div_(d), d


class _StableMaxCrossEntropy(torch.autograd.Function):
    """-log(s_t / S) with S = sum_j s(x_j), and its gradient in closed form:
    d/dx_j = s'(x_j) / S - [j = t] s'(x_t) / s_t, with s' = 1 / d^2 (1 for
    x >= 0). Autograd through the composed ops made a dozen [N, C] float64
    passes per step, 16x the softmax's time at p = 59; this makes seven."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, targets: torch.Tensor, scored: torch.Tensor) -> torch.Tensor:
        s, d = _stablemax_parts(x)
        total = s.sum(-1)
        target = s.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        ctx.save_for_backward(d, total, target, targets, scored)
        return torch.where(scored, -torch.log(target / total), 0.0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        d, total, target, targets, scored = ctx.saved_tensors
        weight = torch.where(scored, grad, 0.0)
        slope = (d * d).reciprocal_()
        at_target = slope.gather(-1, targets.unsqueeze(-1)).squeeze(-1) * weight / target
        out = slope.mul_((weight / total).unsqueeze(-1))
        out.scatter_add_(-1, targets.unsqueeze(-1), -at_target.unsqueeze(-1))
        return out, None, None


def stablemax_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """[N]: -log(s(x_target) / sum_j s(x_j)) of logits [N, C] and targets [N]
    (class indices, IGNORE where not scored: 0 there), in float64, returned
    in the logits' dtype. Logits at -inf (outside a class group) have s = 0."""
    scored = targets != IGNORE
    losses = _StableMaxCrossEntropy.apply(logits.to(torch.float64), torch.where(scored, targets, 0), scored)
    return losses.to(logits.dtype)


def squared_error_to_one_hot(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """[N]: the mean over classes of (output - one-hot target)^2, of outputs [N, C]
    and targets [N] (IGNORE: 0). Outputs at -inf (outside an example's class
    group) are left out of the mean: only its group's classes are scored."""
    scored = targets != IGNORE
    in_group = torch.isfinite(outputs)
    one_hot = F.one_hot(torch.where(scored, targets, 0), outputs.shape[-1]).to(outputs.dtype)
    error = torch.where(in_group, outputs - one_hot, 0.0).square().sum(-1) / in_group.sum(-1).clamp(min=1)
    return torch.where(scored, error, 0.0)


def example_accuracy(info: TaskInfo, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """[S, B]: 1 where an example's predicted class is its label; for a sequence,
    the share of its scored positions predicted right."""
    correct = (info.restrict_outputs(outputs, targets).argmax(-1) == targets).float()
    if not info.sequence:
        return correct
    S, B = targets.shape[:2]
    scored = (targets != IGNORE).reshape(S, B, -1)
    return (correct.reshape(S, B, -1) * scored).sum(-1) / scored.sum(-1).clamp(min=1)
