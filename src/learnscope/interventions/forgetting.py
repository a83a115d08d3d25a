"""Active forgetting: re-initialize the token embedding every K updates.

Chen et al., "Improving Language Plasticity via Pretraining with Active
Forgetting", reset the embedding layer of a language model every K updates
of pretraining, so that the body learns to work with whatever embedding it
is given; Anand et al., "Dual Process Learning: Controlling Use of
In-Context vs. In-Weights Strategies with Weight Forgetting", show that the
same resets push a model toward in-context strategies, and that stopping
them partway (temporary forgetting) keeps in-weights learning as well.

After update u (counted from 1) with u a multiple of `every` and, when
`until` is set, u <= until, every listed parameter (the transformer's
token embedding `embed.weight` by default; for vector inputs, the linear
embedding) is drawn afresh from its own initialization, each seed from the
generator (seed, "active-forgetting", u, name): seed k of an ensemble is
the single run of seed k, and a resumed run draws the same (the draw
depends on the update count alone, so the state is nothing but the step).
The optimizer's state of the reset parameters is zeroed with them (Adam's
moments and step count, SGD's momentum buffer): the next update treats them
as fresh parameters, as a newly built optimizer would. Resets happen for
every seed at the same updates, so the per-tensor state (Adam's step count)
stays equal to a single run's.

`rows: [start, stop)` resets only those rows of each parameter (the item
tokens of an embedding, not the label tokens that share its table): the
rows take the same rows of the fresh draw, and only their per-element
optimizer state is zeroed (Adam's moments; its step count is the tensor's
and goes on, so the rows' first updates after a reset are not
bias-corrected as a fresh parameter's would be).
"""

from __future__ import annotations

import torch
from pydantic import Field, field_validator

from learnscope import registry
from learnscope.errors import SpecError, one_of
from learnscope.models import layers
from learnscope.models.trainer_view import TrainerView
from learnscope.seeding import generator
from learnscope.train.hooks import Intervention, InterventionState


@registry.interventions.register("active-forgetting")
class ActiveForgetting(Intervention):
    every: int = Field(ge=1, description="K: the parameters are re-initialized after every K-th update")
    until: int | None = Field(None, ge=1, description="the last update a reset may follow (temporary "
                              "forgetting); default: resets throughout")
    parameters: list[str] = Field(["embed.weight"], min_length=1, description="parameters re-initialized "
                                  "(names as in the model's named_parameters)")
    rows: tuple[int, int] | None = Field(None, description="only rows [start, stop) of each parameter (tokens "
                                         "of an embedding); default: all of it")

    @field_validator("rows")
    @classmethod
    def _a_range(cls, rows):
        if rows is not None and not 0 <= rows[0] < rows[1]:
            raise ValueError(f"{list(rows)} is no range [start, stop) with 0 <= start < stop")
        return rows

    @field_validator("parameters")
    @classmethod
    def _distinct(cls, parameters):
        if len(set(parameters)) != len(parameters):
            raise ValueError("a parameter is listed twice")
        return parameters

    def build(self, trainer: TrainerView) -> InterventionState:
        return ActiveForgettingState(self, trainer)

    def resets_after(self, update: int) -> bool:
        """Whether the parameters are re-initialized after update `update` (from 1)."""
        return update % self.every == 0 and (self.until is None or update <= self.until)


class ActiveForgettingState(InterventionState):
    parameter_copies = 0  # draws in place; holds nothing

    def __init__(self, spec: ActiveForgetting, trainer: TrainerView):
        self.spec = spec
        path = f"{spec.spec_path(trainer)}.parameters"
        params = dict(trainer.model.named_parameters())
        modules = dict(trainer.model.named_modules())
        trained = {id(p) for p in trainer.params}
        self.targets: list[tuple[str, torch.nn.Parameter, layers.Init]] = []
        for name in spec.parameters:
            if name not in params or id(params[name]) not in trained:
                valid = [n for n, p in params.items() if id(p) in trained]
                raise SpecError(path, f"unknown parameter '{name}'; {one_of(name, valid)}")
            owner, _, attr = name.rpartition(".")
            module = modules[owner]
            inits = getattr(module, "_inits", {}) if isinstance(module, layers.StackedModule) else {}
            if attr not in inits:  # the initializations a stacked module records (layers.initialize draws them)
                raise SpecError(path, f"parameter '{name}' has no recorded per-seed initialization to draw again")
            self.targets.append((name, params[name], inits[attr][1]))
            if spec.rows is not None and spec.rows[1] > params[name].shape[1]:
                raise SpecError(f"{spec.spec_path(trainer)}.rows", f"{list(spec.rows)} goes past the "
                                f"{params[name].shape[1]} rows of '{name}'")

    @torch.no_grad()
    def after_step(self, trainer: TrainerView) -> None:
        update = trainer.step + 1  # updates done, this one included
        if not self.spec.resets_after(update):
            return
        state = trainer.optimizer.state
        rows = slice(*self.spec.rows) if self.spec.rows is not None else slice(None)
        for name, param, init in self.targets:
            shape = tuple(param.shape[1:])
            for k, seed in enumerate(trainer.seeds):
                param[k, rows] = init(shape, generator(seed, "active-forgetting", update, name))[rows].to(param.dtype)
            for value in state.get(param, {}).values():
                if self.spec.rows is None:
                    value.zero_()
                elif value.shape == param.shape:  # a per-element moment: its reset rows only
                    value[:, rows] = 0
