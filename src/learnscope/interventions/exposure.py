"""Few-shot exposure: a split's examples seen in one update, at a stated step.

`single-exposure` (after Orhan, "Recognition, recall, and retention of
few-shot memories in large language models", whose study phase shows a
model its study items once): at update `at` the batch is `split` — every
example of it, each seed its own — instead of the drawn batch (`mix:
replace`) or after it (`mix: append`); every other update is left as drawn.
Whatever the model then remembers of the split comes from that one update
(and from the optimizer state it leaves, e.g. Adam's moments).

The exposure is a function of the update's step alone: nothing is drawn and
no state is kept, so a resumed run exposes exactly what the uninterrupted
one did (at `at` if it resumes before it, never again if after).
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from learnscope import registry
from learnscope.errors import SpecError, one_of
from learnscope.train.hooks import Intervention, InterventionState


@registry.interventions.register("single-exposure")
class SingleExposure(Intervention):
    """Update `at` trains on every example of `split`, once."""

    split: str = Field("items", min_length=1, description="the split shown once (all its examples)")
    at: int = Field(0, ge=0, description="the update (0-based) whose batch holds the split")
    mix: Literal["replace", "append"] = Field(
        "replace", description="replace: the split is that update's whole batch; append: it joins the drawn batch")

    def build(self, trainer) -> InterventionState:
        path = self.spec_path(trainer)
        if self.split not in trainer.data.splits:
            raise SpecError(f"{path}.split", f"unknown split '{self.split}'; {one_of(self.split, trainer.data.splits)}")
        if self.split == trainer.recipe.train_split:
            raise SpecError(f"{path}.split", f"'{self.split}' is the split every update draws from; expose another")
        if self.at >= trainer.recipe.steps:
            raise SpecError(f"{path}.at", f"update {self.at} is past the run's last, {trainer.recipe.steps - 1}")
        return SingleExposureState(self, trainer)


class SingleExposureState(InterventionState):
    parameter_copies = 0

    def __init__(self, spec: SingleExposure, trainer):
        self.spec = spec
        self.extra_examples = trainer.data.size(spec.split)  # at most: the whole split, at one update

    def batch(self, trainer, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if trainer.step != self.spec.at:
            return x, y
        sx, sy = trainer.data.splits[self.spec.split]
        if self.spec.mix == "replace":
            return sx, sy
        return torch.cat([x, sx], 1), torch.cat([y, sy], 1)
