"""Weight averaging along the trajectory: SWA (an equal-weight running mean)
or an EMA of the weights, written into the model after the last update.

Izmailov et al., "Averaging Weights Leads to Wider Optima and Better
Generalization" (SWA), average the weights the run passes through from
update `start` on, every `every` updates, with equal weights; Madhyastha &
Jain, "On Model Stability as a Function of Random Seed", average at every
update (their ASWA: `every: 1`) and find the averaged model's test
accuracy far less spread across seeds than the last iterate's. Mode `ema`
keeps an exponential moving average instead (decay `decay`).

After update u (counted from 1) with u >= start and (u - start) a
multiple of `every`, the average takes in the weights just updated: the
first such update copies them, and later ones apply torch's own rules
(`torch.optim.swa_utils.get_swa_multi_avg_fn`: avg += (w - avg) / (n + 1)
with n the count so far; `get_ema_multi_avg_fn(decay)`: avg = decay · avg
+ (1 - decay) · w), as `AveragedModel.update_parameters` does. They are
element-wise, so on the stacked [S, ...] parameters every seed keeps its
own average: seed k of an ensemble is the single run of seed k.

The trainer has no hook around its probes, so the probes see the averaged
model once, at the end: after the last update the average replaces the
weights (as SWA's final step does; the models have no batch norm to
recompute). The run's final metrics and its last checkpoint are therefore
the averaged model's; every probe before the last update measures the
trajectory itself. The average and its count are in the checkpoint, so a
resumed run averages exactly as one never stopped.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch.optim.swa_utils import get_ema_multi_avg_fn, get_swa_multi_avg_fn

from learnscope import registry
from learnscope.errors import SpecError
from learnscope.models.trainer_view import TrainerView
from learnscope.train.hooks import Intervention, InterventionState


@registry.interventions.register("weight-averaging")
class WeightAveraging(Intervention):
    mode: Literal["swa", "ema"] = Field("swa", description="swa: equal weights (a running mean); ema: exponential decay")
    start: int = Field(1, ge=1, description="the first update whose weights are averaged (counted from 1)")
    every: int = Field(1, ge=1, description="average the weights after every this many updates from start on")
    decay: float = Field(0.99, ge=0, lt=1, description="EMA decay (mode ema)")

    def build(self, trainer: TrainerView) -> InterventionState:
        if self.start > trainer.recipe.steps:
            raise SpecError(f"{self.spec_path(trainer)}.start", f"update {self.start} is past the run's last, "
                            f"{trainer.recipe.steps}; nothing would be averaged")
        return WeightAveragingState(self, trainer.params)


class WeightAveragingState(InterventionState):
    def __init__(self, spec: WeightAveraging, params: list[torch.nn.Parameter]):
        self.spec = spec
        self.params = params
        self.average: list[torch.Tensor] | None = None
        self.count = 0  # weights taken into the average so far
        self.update = get_swa_multi_avg_fn() if spec.mode == "swa" else get_ema_multi_avg_fn(spec.decay)

    def averaged_after(self, update: int) -> bool:
        return update >= self.spec.start and (update - self.spec.start) % self.spec.every == 0

    @torch.no_grad()
    def after_step(self, trainer: TrainerView) -> None:
        update = trainer.step + 1  # the update just done, counted from 1
        weights = [p.detach() for p in self.params]
        if self.averaged_after(update):
            if self.average is None:
                self.average = [w.clone() for w in weights]
            else:
                self.update(self.average, weights, self.count)
            self.count += 1
        if update == trainer.recipe.steps and self.average is not None:
            torch._foreach_copy_(weights, self.average)

    def state_dict(self) -> dict[str, torch.Tensor]:
        state = {"count": torch.tensor(self.count)}
        for i, t in enumerate(self.average or []):
            state[f"average.{i}"] = t
        return state

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.count = int(state["count"])
        keys = sorted((k for k in state if k.startswith("average.")), key=lambda k: int(k.split(".")[1]))
        self.average = [state[k].clone() for k in keys] or None
