"""Spawning: a run copied at update t and the copy perturbed, both trained
on after with the same data in the same order ("The Butterfly Effect:
Neural Network Training Trajectories Are Highly Sensitive to Initial
Conditions", Altıntaş et al. 2025).

`spawn` pairs the ensemble's members in order, (0, 1), (2, 3), ...: each
pair's second member is given its first's data and batches (paired.py), and
after update `at` (0: before the first) it becomes a copy of its first
member, parameters and optimizer state alike, perturbed by

    W ← W + scale · σ(W) · ξ,   ξ ~ N(0, 1) elementwise,

σ(W) the spread of the tensor's initialization (perturb.py's: its std over
elements as the first member's seed initializes it; a tensor initialized to
a constant is not perturbed), ξ drawn from the generator (second member's
seed, "perturb-init", "spawn/" + stream, NAME). `scale: 0` gives an exact copy, which must
then follow its first member exactly. `at: null` never copies: the pair's
members keep their own initializations on the same data and batches, the
independent-seed reference. The pair probes (probes/pairs.py) measure how
far a pair's trajectories have come apart. Nothing is kept beyond the
parameters, so a resumed run continues exactly.
"""

from __future__ import annotations

import torch
from pydantic import Field

from learnscope import registry
from learnscope.errors import SpecError
from learnscope.interventions.paired import check_pairs, share_pair_batch, share_pair_data
from learnscope.interventions.perturb import initialization_spread, perturbation
from learnscope.models.trainer_view import TrainerView
from learnscope.train.hooks import Intervention, InterventionState


@registry.interventions.register("spawn")
class Spawn(Intervention):
    at: int | None = Field(0, ge=0, description="the update after which each pair's second member becomes a "
                           "perturbed copy of its first (0: before the first update); null: never (independent "
                           "initializations, same data and batches)")
    scale: float = Field(1e-4, ge=0, le=1000, description="perturbation std, in units of each tensor's "
                         "initialization spread; 0: an exact copy")
    stream: str = Field("spawn", min_length=1, description="names the perturbation's draw")

    def build(self, trainer: TrainerView) -> InterventionState:
        path = self.spec_path(trainer)
        if self.at is not None and self.at >= max(trainer.recipe.steps, 1):
            raise SpecError(f"{path}.at", f"update {self.at} is past the run's last, {trainer.recipe.steps - 1}")
        if len(trainer.seeds) > 1:  # the memory estimate builds a one-seed trainer of any experiment
            check_pairs(trainer, path, "spawn")
        return SpawnState(self, path)


class SpawnState(InterventionState):
    parameter_copies = 1  # the fresh initialization the spread is read from, while it is read

    def __init__(self, spec: Spawn, path: str):
        self.spec = spec
        self.path = path

    def on_start(self, trainer: TrainerView) -> None:
        check_pairs(trainer, self.path, "spawn")
        share_pair_data(trainer)
        if self.spec.at == 0 and trainer.step == 0:
            self.spawn(trainer)
            for reference, p in zip(trainer.initial_params, trainer.params):
                reference.copy_(p.detach())  # the copy's start is its reference of weight change

    def batch(self, trainer: TrainerView, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return share_pair_batch(x, y)

    def after_step(self, trainer: TrainerView) -> None:
        if self.spec.at is not None and self.spec.at > 0 and trainer.step + 1 == self.spec.at:
            self.spawn(trainer)

    @torch.no_grad()
    def spawn(self, trainer: TrainerView) -> None:
        spread = initialization_spread(trainer) if self.spec.scale else {}
        state = trainer.optimizer.state
        members = len(trainer.seeds)
        for name, p in trainer.model.named_parameters():
            if not p.requires_grad:
                continue
            p[1::2] = p[0::2]
            for value in state.get(p, {}).values():
                if value.dim() and value.shape[0] == members:  # a per-seed moment goes with its parameters
                    value[1::2] = value[0::2]
            if not self.spec.scale:
                continue
            for k in range(1, members, 2):
                sigma = float(spread[name][k - 1])
                if sigma > 0:
                    noise = perturbation(trainer.seeds[k], f"spawn/{self.spec.stream}", name, p.shape[1:])
                    p[k] += self.spec.scale * sigma * noise.to(p.device, p.dtype)
