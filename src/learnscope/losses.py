"""Per-example losses and correctness, for every kind of task target.

- classification: targets [S, B] class indices; cross-entropy per example
  (logits outside an example's class group excluded, for task-incremental
  streams);
- sequence: targets [S, B, T] next-token indices, IGNORE where a position is
  not scored (a prompt, padding); the per-example loss is the mean
  cross-entropy over its scored positions;
- regression: targets [S, B, out]; mean squared error per example.

The training loss of a seed is the mean of its per-example losses; probes,
membership inference and unlearning objectives read the per-example values.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from learnscope.tasks.base import TaskInfo

IGNORE = -100  # a sequence position that is not scored
# CPU log-softmax over fewer than 16 classes takes a scalar path ~8x slower per element;
# columns of -inf have probability 0 and gradient 0, so padding to 16 keeps the loss exact
SOFTMAX_MIN_WIDTH = 16


def example_losses(info: TaskInfo, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """[S, B]: the loss of every example."""
    S, B = targets.shape[:2]
    if not info.is_classification:
        return (outputs - targets).square().reshape(S, B, -1).mean(-1)
    flat = _cross_entropy(info, outputs, targets)
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


def _cross_entropy(info: TaskInfo, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per scored target, flat: [S · B] or [S · B · T], 0 at IGNORE."""
    outputs = info.restrict_outputs(outputs, targets)
    classes = outputs.shape[-1]
    if classes < SOFTMAX_MIN_WIDTH:
        outputs = F.pad(outputs, (0, SOFTMAX_MIN_WIDTH - classes), value=float("-inf"))
    return F.cross_entropy(outputs.reshape(-1, outputs.shape[-1]), targets.reshape(-1), reduction="none",
                           ignore_index=IGNORE)


def example_accuracy(info: TaskInfo, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """[S, B]: 1 where an example's predicted class is its label; for a sequence,
    the share of its scored positions predicted right."""
    correct = (info.restrict_outputs(outputs, targets).argmax(-1) == targets).float()
    if not info.sequence:
        return correct
    S, B = targets.shape[:2]
    scored = (targets != IGNORE).reshape(S, B, -1)
    return (correct.reshape(S, B, -1) * scored).sum(-1) / scored.sum(-1).clamp(min=1)
