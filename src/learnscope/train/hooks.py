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
    def loss(self, trainer: Trainer, outputs: torch.Tensor, targets: torch.Tensor, members: slice
             ) -> torch.Tensor | None:
        """An extra loss for the seeds `members` (a slice of the ensemble: large
        models train in groups of seeds) given their outputs and targets on one
        pass, shape [len(members)], or None. A mean over the pass's examples, or
        independent of them (e.g. a penalty on trainer.params[k][members])."""
        return None

    def after_backward(self, trainer: Trainer) -> None:
        """Change the gradients (p.grad of trainer.params) in place."""

    def after_step(self, trainer: Trainer) -> None:
        """Change the weights in place."""

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        pass
