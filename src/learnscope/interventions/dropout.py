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
the same units. (An intervention listed after `dropout` that adds examples
to the batch, as `replay` does, gets masks drawn for the longer batch; list
`dropout` last for the masks to be the same under every memory plan.)
"""

from __future__ import annotations

import math
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


class BatchDrawsState(InterventionState):
    """What `dropout` and `nested-dropout` share: per seed, uniform draws for
    every example of the update's batch from generators derived from (seed,
    name, site, step), kept while the step lasts, so that every pass of the
    update takes its share of the same draws."""

    parameter_copies = 0

    def __init__(self, name: str, site: str):
        self.stream = (name, site)
        self._batch = 0  # examples per seed in this update's batch (dropout's copies included)
        self._draws: tuple[int, torch.Tensor] | None = None  # (step, [S, batch, *shape])

    def batch(self, trainer: TrainerView, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self._batch = y.shape[1]
        return x, y

    def uniform(self, trainer: TrainerView, step: int, reach: int, shape: tuple[int, ...] = (),
                dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """[S, batch, *shape] uniform draws of `step`, for at least `reach`
        examples (an intervention listed after this one may have added
        examples to the batch)."""
        size = max(self._batch, reach)
        held = self._draws
        if held is None or held[0] != step or held[1].shape[1] < size or tuple(held[1].shape[2:]) != shape:
            draws = [torch.rand((size, *shape), generator=generator(seed, *self.stream, step), dtype=dtype)
                     for seed in trainer.seeds]
            self._draws = (step, torch.stack(draws))
        return self._draws[1]


class DropoutState(BatchDrawsState):
    def __init__(self, spec: Dropout, trainer: TrainerView):
        super().__init__("dropout", spec.site)
        self.spec = spec
        self.extra_examples = (spec.samples - 1) * trainer.sampler.drawn_batch()

    def batch(self, trainer: TrainerView, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.spec.samples > 1:
            x, y = torch.cat([x] * self.spec.samples, 1), torch.cat([y] * self.spec.samples, 1)
        return super().batch(trainer, x, y)

    def site_edits(self, trainer: TrainerView, step: int, members: slice, examples: slice) -> dict[str, Edit]:
        p = self.spec.rate(step)
        if not trainer.model.training or p == 0:  # probes measure the model without dropout
            return {}

        def drop(value: torch.Tensor) -> torch.Tensor:
            keep = self.uniform(trainer, step, examples.stop, tuple(value.shape[2:]))[members, examples] >= p
            return value * keep.to(value.device, value.dtype) / (1 - p)

        return {self.spec.site: drop}


@registry.interventions.register("nested-dropout")
class NestedDropout(Intervention):
    """Ordered (nested) dropout at `site` in training: per example b ~ Geometric(rho), units b+1..K zeroed.

    "Learning Ordered Representations with Nested Dropout" (Rippel et al.
    2014), as "Compressing Features for Learning with Noisy Labels" uses it:
    each example keeps the first b units along the site's last axis (every
    position of a sequence the same b) and loses the rest, b drawn from
    P(b) = rho (1 - rho)^(b - 1), b >= 1 (mean 1/rho), capped at the width
    K. No rescaling: a unit's activation is the same whenever it is kept,
    which is what orders the units by importance. Probes see the model
    without it; the `truncation` probe measures the order. Draws per seed
    from (seed, "nested-dropout", site, step), for the whole batch, as
    `dropout`'s."""

    site: str = Field(description="a site of the model (`learnscope sites` lists them)")
    rho: float = Field(0.1, gt=0, le=1, description="the geometric distribution's success probability: mean b = 1/rho")

    def build(self, trainer: TrainerView) -> InterventionState:
        trainer.model.check_sites([self.site], f"{self.spec_path(trainer)}.site")
        return NestedDropoutState(self)


class NestedDropoutState(BatchDrawsState):
    def __init__(self, spec: NestedDropout):
        super().__init__("nested-dropout", spec.site)
        self.spec = spec

    def site_edits(self, trainer: TrainerView, step: int, members: slice, examples: slice) -> dict[str, Edit]:
        if not trainer.model.training:
            return {}

        def truncate(value: torch.Tensor) -> torch.Tensor:
            kept = self.kept(trainer, step, examples.stop)[members, examples].to(value.device)
            units = torch.arange(value.shape[-1], device=value.device)
            mask = units < kept.view(*kept.shape, *([1] * (value.dim() - 2)))
            return value * mask.to(value.dtype)

        return {self.spec.site: truncate}

    def kept(self, trainer: TrainerView, step: int, reach: int = 0) -> torch.Tensor:
        """b of every example of the update's batch, per seed: [S, batch]."""
        uniform = self.uniform(trainer, step, reach, dtype=torch.float64).clamp(min=1e-300)
        rho = self.spec.rho
        # inverse CDF: the failures before the first success, floor(ln U / ln(1 - rho)), plus one
        failures = torch.zeros_like(uniform) if rho == 1 else torch.floor(uniform.log() / math.log1p(-rho))
        return (failures + 1).clamp(max=2**31 - 1).long()
