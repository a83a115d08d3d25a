"""A run's starting parameters perturbed by Gaussian noise whose scale is
stated relative to the spread of the model's initialization.

`perturb-init` adds, once, before the first update, to every trained
parameter tensor W of every seed

    W ← W + scale · σ(W) · ξ,   ξ ~ N(0, 1) elementwise,

where σ(W) is the spread of that tensor's initialization: the standard
deviation (over its elements, ddof 0) of the tensor as this run's model
initializes it for the seed (the seed's own initialization, `init_stream`
included), whatever the run starts from. Applied after `init_from`, it
starts a run near another run's parameters: "a student initialized close
to its teacher" ("Random Teachers are Good Teachers"), or a copy of a run
perturbed at its checkpoint's step (the trajectory-divergence experiments
of "The Butterfly Effect"). A tensor initialized to a constant (σ = 0: a
normalization gain, a zero bias) is left as it is.

The noise of seed k and parameter NAME is drawn from the generator
(k, "perturb-init", stream, NAME): it depends on nothing else, so seed k of
an ensemble is perturbed as a single run of seed k is, and arms with
another `stream` draw independent perturbations. The perturbed parameters
become the run's initial parameters (`trainer.initial_params`: the
reference of relative weight change and of unlearning objectives). On
resume the checkpoint holds the parameters; only the reference is
perturbed again, to the same values.
"""

from __future__ import annotations

from typing import cast

import torch
from pydantic import Field

from learnscope import registry
from learnscope.models.base import Model
from learnscope.models.trainer_view import TrainerView
from learnscope.seeding import generator, init_seeds
from learnscope.train.hooks import Intervention, InterventionState


@registry.interventions.register("perturb-init")
class PerturbInit(Intervention):
    scale: float = Field(ge=0, le=1000, description="noise standard deviation, in units of each parameter tensor's "
                         "initialization spread (its std over elements as this run's model initializes it)")
    stream: str = Field("perturb", min_length=1, description="names the noise draw: another stream, another "
                        "perturbation of the same seeds")

    def build(self, trainer: TrainerView) -> InterventionState:
        return PerturbInitState(self)


def initialization_spread(trainer: TrainerView) -> dict[str, torch.Tensor]:
    """Per trained parameter NAME, the std (ddof 0) over its elements of each
    seed's own initialization of it, [S]."""
    experiment = trainer.experiment
    fresh = cast(Model, experiment.model).build(trainer.info, init_seeds(trainer.seeds, experiment.init_stream))
    trained = {name for name, p in trainer.model.named_parameters() if p.requires_grad}
    return {name: p.detach().reshape(p.shape[0], -1).double().std(1, correction=0)
            for name, p in fresh.named_parameters() if name in trained}


def perturbation(seed: int, stream: str, name: str, shape: torch.Size) -> torch.Tensor:
    """ξ of one seed's parameter NAME: standard normal of the per-seed `shape`."""
    return torch.randn(shape, generator=generator(seed, "perturb-init", stream, name))


class PerturbInitState(InterventionState):
    parameter_copies = 1  # the fresh initialization the spread is read from, while it is read

    def __init__(self, spec: PerturbInit):
        self.spec = spec
        self.applied = False  # on_start runs once per trainer; a resumed run builds a new one

    @torch.no_grad()
    def on_start(self, trainer: TrainerView) -> None:
        if self.applied:
            return
        self.applied = True
        spread = initialization_spread(trainer)
        names = [name for name, p in trainer.model.named_parameters() if p.requires_grad]
        for name, p, start in zip(names, trainer.params, trainer.initial_params):
            noise = torch.stack([perturbation(seed, self.spec.stream, name, p.shape[1:]) for seed in trainer.seeds])
            sigma = spread[name].view(-1, *([1] * (p.dim() - 1)))
            start.add_((self.spec.scale * sigma * noise.double()).to(start))
            if trainer.step == 0:
                p.copy_(start)
