"""The hook points at which interventions change training.

Per update: loss terms are added to the task loss, then after backward the
gradients may be changed, then after the optimizer step the weights. Every
hook sees all S seeds at once and must treat them independently.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from learnscope.spec import InterventionSpec

if TYPE_CHECKING:
    from learnscope.train.trainer import Trainer


class Intervention(InterventionSpec):
    """An intervention is a spec (its fields are its parameters) that builds
    the object holding its training-time state."""

    def build(self, trainer: Trainer) -> InterventionState:
        raise NotImplementedError


class InterventionState:
    def loss(self, trainer: Trainer, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor | None:
        """An extra loss per seed, shape [S], or None."""
        return None

    def after_backward(self, trainer: Trainer) -> None:
        """Change the gradients (p.grad of trainer.params) in place."""

    def after_step(self, trainer: Trainer) -> None:
        """Change the weights in place."""

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        pass
