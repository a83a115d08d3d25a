"""Dropout at any site of the model, on a schedule, and multi-sample dropout.

`dropout`: in the training passes (never in the probes', which measure the
model in eval mode, as torch.nn.Dropout is), each unit of each example at
`site` (`learnscope sites` lists them; every position of a sequence
separately) is zeroed with probability p(step) and the others are scaled by
1/(1 − p(step)): inverted dropout. The schedule (`mode`) is that of "Dropout
Reduces Underfitting" (Liu et al. 2023), whose code's `drop_scheduler`
has these modes:

- `standard`: p at every step;
- `early`: the first `cutoff` steps only, at p (`schedule: constant`) or
  from p down to 0 (`linear`, p · (1 − t / (cutoff − 1)) at step t, the
  reference's np.linspace(p, 0, cutoff)); then none;
- `late`: none before step `cutoff`, p from it on.

`samples` M > 1 is multi-sample dropout ("Multi-Sample Dropout for
Accelerated Training and Better Generalization", Inoue 2019): the update's
batch is taken M times, each copy under masks of its own, and the loss is
the mean over all the copies' examples, i.e. the mean of the M samples'
losses. The source computes the layers below the dropout once and shares
them; here the whole batch is repeated, so those layers run M times: the
same update for M times their compute.

Masks come per seed from generators derived from (seed, "dropout", site,
step), drawn for the update's whole batch, and a pass over a share of it
takes that share: every memory plan, every ensemble and a resumed run drop
the same units.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, model_validator

from learnscope import registry
from learnscope.errors import SpecError
from learnscope.models.base import Edit
from learnscope.models.trainer_view import TrainerView
from learnscope.seeding import generator
from learnscope.train.hooks import Intervention, InterventionState


@registry.interventions.register("dropout")
class Dropout(Intervention):
    """Inverted dropout at `site` in training, at p on a schedule; M samples per update."""

    site: str = Field(description="a site of the model (`learnscope sites` lists them)")
    p: float = Field(0.1, ge=0, lt=1, description="the probability that a unit is dropped")
    mode: Literal["standard", "early", "late"] = Field("standard", description="standard: always; early: before "
                                                       "`cutoff` only; late: from `cutoff` on")
    schedule: Literal["constant", "linear"] = Field("constant", description="early: p throughout, or p down to 0")
    cutoff: int = Field(0, ge=0, description="early, late: the step that ends early dropout or starts late dropout")
    samples: int = Field(1, ge=1, le=64, description="dropout samples per update (multi-sample dropout: M > 1)")

    @model_validator(mode="after")
    def _schedule_fits_the_mode(self):
        if self.schedule == "linear" and self.mode != "early":
            raise ValueError(f"schedule linear is early dropout's (mode: early); mode {self.mode} takes constant")
        if self.mode != "standard" and self.cutoff < 1:
            raise ValueError(f"mode {self.mode} needs a cutoff step of at least 1")
        return self

    def rate(self, step: int) -> float:
        """p at update `step`."""
        if self.mode == "standard":
            return self.p
        if self.mode == "late":
            return self.p if step >= self.cutoff else 0.0
        if step >= self.cutoff:
            return 0.0
        if self.schedule == "constant" or self.cutoff == 1:
            return self.p
        return self.p * (1 - step / (self.cutoff - 1))

    def build(self, trainer: TrainerView) -> InterventionState:
        path = self.spec_path(trainer)
        trainer.model.check_sites([self.site], f"{path}.site")
        if self.mode != "standard" and self.cutoff >= trainer.recipe.steps:
            raise SpecError(f"{path}.cutoff", f"step {self.cutoff} is past the run's last, "
                            f"{trainer.recipe.steps - 1}: {self.mode} dropout would never change")
        return DropoutState(self, trainer)


class DropoutState(InterventionState):
    parameter_copies = 0

    def __init__(self, spec: Dropout, trainer: TrainerView):
        self.spec = spec
        pool = trainer.train_y.shape[1]
        self.extra_examples = (spec.samples - 1) * min(trainer.recipe.batch_size or pool, pool)
        self._batch = 0  # examples per seed in this update's batch, copies included
        self._masks: tuple[int, torch.Tensor] | None = None  # (step, keep masks of every seed)

    def batch(self, trainer: TrainerView, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.spec.samples > 1:
            x, y = torch.cat([x] * self.spec.samples, 1), torch.cat([y] * self.spec.samples, 1)
        self._batch = y.shape[1]
        return x, y

    def site_edits(self, trainer: TrainerView, step: int, members: slice, examples: slice) -> dict[str, Edit]:
        p = self.spec.rate(step)
        if not trainer.model.training or p == 0:  # probes measure the model without dropout
            return {}

        def drop(value: torch.Tensor) -> torch.Tensor:
            keep = self.keep_masks(trainer, step, value.shape[2:], p)[members, examples]
            return value * keep.to(value.device, value.dtype) / (1 - p)

        return {self.spec.site: drop}

    def keep_masks(self, trainer: TrainerView, step: int, unit_shape: torch.Size, p: float) -> torch.Tensor:
        """[S, batch, *unit_shape] bool: which units every seed keeps at `step`."""
        if self._masks is None or self._masks[0] != step:
            draws = [torch.rand((self._batch, *unit_shape), generator=generator(seed, "dropout", self.spec.site, step))
                     for seed in trainer.seeds]
            self._masks = (step, torch.stack(draws) >= p)
        return self._masks[1]
