"""The hook points at which interventions change training.

Per update: at a stream's switch of block `on_block`; the batch may be
changed (`batch`); loss terms are added to the task loss (`loss`); after
backward the gradients may be changed (`after_backward`); after the
optimizer step, the weights (`after_step`). Every hook sees all S seeds at
once and must treat them independently.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from learnscope.spec import InterventionSpec
from learnscope.tasks.base import Block

if TYPE_CHECKING:
    from learnscope.train.trainer import Trainer


class Intervention(InterventionSpec):
    """An intervention is a spec (its fields are its parameters) that builds
    the object holding its training-time state."""

    def build(self, trainer: Trainer) -> InterventionState:
        raise NotImplementedError


class InterventionState:
    """Training-time state of an intervention. Every hook sees all S seeds at
    once and must treat them independently; randomness comes from generators
    derived from (seed, name, step), so that a resumed run draws the same."""

    def on_block(self, trainer: Trainer, block: Block, previous: Block | None) -> None:
        """A stream's next block begins (before its first update): `previous` is
        the block just finished (None at the start)."""

    def batch(self, trainer: Trainer, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Change the update's batch [S, B, ...] (e.g. add replayed examples)."""
        return x, y

    def loss(self, trainer: Trainer, inputs: torch.Tensor, outputs: torch.Tensor, targets: torch.Tensor,
             members: slice) -> torch.Tensor | None:
        """An extra loss for the seeds `members` (a slice of the ensemble: large
        models train in groups of seeds) given their inputs, outputs and
        targets on one pass, shape [len(members)], or None. A mean over the
        pass's examples, or independent of them (e.g. a penalty on
        trainer.params[k][members])."""
        return None

    def after_backward(self, trainer: Trainer) -> None:
        """Change the gradients (p.grad of trainer.params) in place."""

    def after_step(self, trainer: Trainer) -> None:
        """Change the weights in place."""

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Everything the next updates depend on, as tensors (for checkpoints)."""
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        pass
