"""Few-shot exposure: a split's examples seen in one update, at a stated step.

`single-exposure` (after Orhan, "Recognition, recall, and retention of
few-shot memories in large language models", whose study phase shows a
model its study items once): at update `at` the batch is `split` — every
example of it, each seed its own — instead of the drawn batch (`mix:
replace`) or after it (`mix: append`); every other update is left as drawn.
Whatever the model then remembers of the split comes from that one update
(and from the optimizer state it leaves, e.g. Adam's moments).

Two optional fields (defaults: one exposure, the whole split in its one
update) make it few-shot: `times` shows the split that many times, at
consecutive updates (the paper's few exposures, which recall needs), and
`per_update` spreads each showing over consecutive updates of `per_update`
examples each, in the split's order (the last one holding the rest), so
that every example is seen once per showing in a smaller batch. Showing j
(0-based) of chunk c then is update `at + j * chunks + c`, where `chunks`
is ceil(size of the split / per_update).

The exposure is a function of the update's step alone: nothing is drawn and
no state is kept, so a resumed run exposes exactly what the uninterrupted
one did (at `at` if it resumes before it, never again if after).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field

from learnscope import registry
from learnscope.errors import SpecError, one_of
from learnscope.train.hooks import Intervention, InterventionState


@registry.interventions.register("single-exposure")
class SingleExposure(Intervention):
    """Update `at` trains on every example of `split`, once (or `times` times,
    at consecutive updates, `per_update` examples an update)."""

    split: str = Field("items", min_length=1, description="the split shown once (all its examples)")
    at: int = Field(0, ge=0, description="the update (0-based) whose batch holds the split")
    mix: Literal["replace", "append"] = Field(
        "replace", description="replace: the split is that update's whole batch; append: it joins the drawn batch")
    times: int = Field(1, ge=1, description="showings of the split, at consecutive updates from `at` (few-shot)")
    per_update: int | None = Field(None, ge=1, description="examples of the split an update (None: all of it): "
                                   "each showing spreads over consecutive updates")

    def build(self, trainer) -> InterventionState:
        path = self.spec_path(trainer)
        if self.split not in trainer.data.splits:
            raise SpecError(f"{path}.split", f"unknown split '{self.split}'; {one_of(self.split, trainer.data.splits)}")
        if self.split == trainer.recipe.train_split:
            raise SpecError(f"{path}.split", f"'{self.split}' is the split every update draws from; expose another")
        if self.at >= trainer.recipe.steps:
            raise SpecError(f"{path}.at", f"update {self.at} is past the run's last, {trainer.recipe.steps - 1}")
        state = SingleExposureState(self, trainer)
        last = self.at + state.updates - 1
        if last >= trainer.recipe.steps:
            raise SpecError(f"{path}.times", f"the exposures take updates {self.at}..{last}, past the run's last, "
                            f"{trainer.recipe.steps - 1}")
        return state


class SingleExposureState(InterventionState):
    parameter_copies = 0

    def __init__(self, spec: SingleExposure, trainer):
        self.spec = spec
        size = trainer.data.size(spec.split)
        self.per_update = size if spec.per_update is None else min(spec.per_update, size)
        self.chunks = math.ceil(size / self.per_update)
        self.updates = spec.times * self.chunks  # updates that hold (part of) the split
        self.extra_examples = self.per_update  # at most: the whole split (or a chunk), at one update

    def batch(self, trainer, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        offset = trainer.step - self.spec.at
        if not 0 <= offset < self.updates:
            return x, y
        sx, sy = trainer.data.splits[self.spec.split]
        if self.chunks > 1:
            chunk = slice((offset % self.chunks) * self.per_update, (offset % self.chunks + 1) * self.per_update)
            sx, sy = sx[:, chunk], sy[:, chunk]
        if self.spec.mix == "replace":
            return sx, sy
        return torch.cat([x, sx], 1), torch.cat([y, sy], 1)
