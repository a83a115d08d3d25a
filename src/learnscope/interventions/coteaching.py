"""Co-teaching: two peer networks, each choosing the examples of the batch it
fits best for the other to learn from ("Co-teaching: Robust Training of
Deep Neural Networks with Extremely Noisy Labels", Han et al. 2018; with
nested dropout in "Compressing Features for Learning with Noisy Labels").

The ensemble's members pair up in order, (0, 1), (2, 3), ...: the seeds
list must be even, and each pair is one co-teaching run. The peers of a
pair share the first peer's data (a task draws its data per seed: at the
run's start every split of the second peer is overwritten, in place, with
the first's, so both train and are probed on the same examples) and its
batches (the second peer's drawn batch is replaced by the first's); they
differ in their initializations, each its own seed's. Per update, with r(t)
the forget rate, each peer ranks the batch's examples by its own loss and
keeps the floor((1 − r(t)) · B) with the smallest (ties to the earlier example);
each peer's objective is the mean of its loss over the examples its
partner kept. r(t) rises linearly from 0 to `forget_rate` over the first
`warmup` updates, as the source's np.linspace(0, forget_rate, warmup)
(exponent 1), and stays there; `forget_rate` is the noise rate assumed. Nothing is drawn and no state is
kept, so a resumed run continues exactly.
"""

from __future__ import annotations

import torch
from pydantic import Field

from learnscope import registry
from learnscope.errors import LearnscopeError, SpecError
from learnscope.interventions.paired import check_pairs, share_pair_batch, share_pair_data
from learnscope.losses import example_losses
from learnscope.models.trainer_view import TrainerView
from learnscope.train.hooks import Intervention, InterventionState


@registry.interventions.register("co-teaching")
class CoTeaching(Intervention):
    """Pairs of members teach each other on the examples each fits best."""

    forget_rate: float = Field(0.4, ge=0, lt=1, description="the share of each batch dropped once warmed up "
                               "(the noise rate assumed)")
    warmup: int = Field(0, ge=0, description="updates over which the forget rate rises linearly from 0")

    def rate(self, step: int) -> float:
        """r(t): the share of the batch each peer drops at update `step`."""
        if step >= self.warmup or self.warmup == 1:
            return self.forget_rate
        return self.forget_rate * step / (self.warmup - 1)  # the source's np.linspace(0, rate, warmup)

    def build(self, trainer: TrainerView) -> InterventionState:
        path = self.spec_path(trainer)
        if not trainer.info.is_classification:
            raise SpecError(path, f"co-teaching ranks examples by their classification loss; task "
                            f"'{trainer.experiment.task.registry_name}' is regression ({trainer.info.loss})")
        if len(trainer.seeds) > 1:  # the memory estimate builds a one-seed trainer of any experiment
            check_pairs(trainer, path, "co-teaching")
        return CoTeachingState(self, path)


class CoTeachingState(InterventionState):
    parameter_copies = 0
    whole_batches = True  # a peer's selection ranks the whole batch

    def __init__(self, spec: CoTeaching, path: str):
        self.spec = spec
        self.path = path

    def on_start(self, trainer: TrainerView) -> None:
        check_pairs(trainer, self.path, "co-teaching")  # a one-seed trainer is refused when its run starts
        share_pair_data(trainer)

    def batch(self, trainer: TrainerView, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return share_pair_batch(x, y)

    def objective(self, trainer: TrainerView, inputs: torch.Tensor, outputs: torch.Tensor, targets: torch.Tensor,
                  members: slice) -> torch.Tensor:
        start, stop = members.indices(len(trainer.seeds))[:2]
        if start % 2 or (stop - start) % 2:
            raise LearnscopeError(f"co-teaching: a training pass holds members {start} to {stop - 1}, which splits a "
                                  f"pair; it needs both peers of every pair in one pass (fewer seeds, or a smaller "
                                  f"model)")
        losses = example_losses(trainer.info, outputs, targets, trainer.recipe.loss)  # [s, B]
        batch = losses.shape[1]
        kept = max(1, int((1 - self.spec.rate(trainer.step)) * batch))  # the source's int(): a floor
        order = torch.sort(losses.detach(), dim=1, stable=True).indices[:, :kept]
        chosen = torch.zeros_like(losses, dtype=torch.bool).scatter_(1, order, True)
        partner = chosen.view(-1, 2, batch).flip(1).reshape(-1, batch)  # each peer learns from the other's choice
        return (losses * partner).sum(1) / kept
