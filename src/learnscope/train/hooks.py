"""The hook points at which interventions change training.

Once per run of the trainer, before its first update or probe (at step 0,
or at a resumed checkpoint's step): `on_start`. Per update: at a stream's switch of block `on_block`; the batch may be
changed (`batch`); the model's sites may be edited in every forward pass
(`site_edits`, also in the probes' passes); loss terms are added to the task
loss (`loss`); after backward the gradients may be changed
(`after_backward`); after the optimizer step, the weights (`after_step`).
Every hook sees all S seeds at once and must treat them independently.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from learnscope.errors import SpecError
from learnscope.models.base import Edit
from learnscope.models.trainer_view import TrainerView
from learnscope.spec import Experiment, InterventionSpec, RunReference
from learnscope.tasks.base import Block


@dataclass(frozen=True)
class StreamBudget:
    """What the catalog's continual-learning comparisons give every strategy
    on a stream: its length and the memory a rehearsal strategy may keep."""

    experiences: int
    memory_per_experience: int
    rehearsed_per_update: int


class Intervention(InterventionSpec):
    """An intervention is a spec (its fields are its parameters) that builds
    the object holding its training-time state."""

    @classmethod
    def stream_strategy(cls, budget: StreamBudget) -> dict[str, Any] | None:
        """A continual-learning strategy says here the parameters it takes in
        the catalog's stream comparisons (catalog/forgetting.py, which tells
        how they were measured), within `budget`; with it, a new strategy
        joins those comparisons from its own file. None: not a strategy."""
        return None

    def build(self, trainer: TrainerView) -> InterventionState:
        raise NotImplementedError

    def spec_path(self, trainer: TrainerView) -> str:
        """Where this intervention sits in the spec, for errors found when building it."""
        index = next((i for i, iv in enumerate(trainer.experiment.interventions) if iv is self), None)
        return "interventions" if index is None else f"interventions[{index}]"

    def require_stream(self, trainer: TrainerView) -> None:
        """Refuse, in one line, a task that is not a stream of experiences."""
        if not trainer.blocks:
            task = trainer.experiment.task.registry_name
            raise SpecError(self.spec_path(trainer), f"{self.registry_name} applies to streams of experiences "
                            f"(permuted-stream, split-stream); task '{task}' is not one")


def experience_ended(block: Block, previous: Block | None) -> int | None:
    """The experience a block switch leaves (None at the start, or when the
    next block trains on the same experience again)."""
    return previous.experience if previous is not None and previous.experience != block.experience else None


class InterventionState:
    """Training-time state of an intervention. Every hook sees all S seeds at
    once and must treat them independently; randomness comes from generators
    derived from (seed, name, step), so that a resumed run draws the same."""

    # copies of the parameters the state comes to hold during training beyond the tensors it
    # holds when built (a gradient average, an anchor and its importance): what the memory
    # estimate adds for it (train/memory.py). A state that does not say counts one.
    parameter_copies: int = 1

    def on_start(self, trainer: TrainerView) -> None:
        """Training is about to begin (trainer.step == 0) or resume (a checkpoint's
        step): the parameters are in place, `init_from`'s or the checkpoint's, and
        trainer.initial_params hold what the run started from. Called before the
        first probe, so a change made here (e.g. a split rewritten in place) is
        what every probe sees."""

    def read_run(self, trainer: TrainerView, reference: RunReference, experiment: Experiment,
                 tensors: dict[str, torch.Tensor], seeds: list[int], source: str) -> None:
        """The last checkpoint (`tensors`, of `seeds`) of a run the intervention
        reads (`runs_read`): the run `source`, an ordinary run of `experiment`.
        Given when the trainer is built and again on resume, before `on_start`."""
        raise NotImplementedError(f"{type(self).__name__} names runs it reads but does not read them")

    def on_block(self, trainer: TrainerView, block: Block, previous: Block | None) -> None:
        """A stream's next block begins (before its first update): `previous` is
        the block just finished (None at the start)."""

    # examples per seed that `batch` adds at most, so that the trainer sizes its passes for them
    extra_examples: int = 0

    def batch(self, trainer: TrainerView, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Change the update's batch [S, B, ...] (e.g. add replayed examples: at
        most `extra_examples` per seed)."""
        return x, y

    def site_edits(self, trainer: TrainerView, step: int, members: slice, examples: slice) -> dict[str, Edit]:
        """Edits of the model's sites (site -> edit, models.base.Sites) for one forward
        pass at `step` over the seeds `members` and the `examples` (their positions in
        the update's batch, or in the probed split): the trainer's training passes
        and the probes' passes alike, so that what trains and what is measured is
        the edited model. A probe at step t sees the edits of update t. An edit
        that reads the whole batch (a mean over it) needs `whole_batches`."""
        return {}

    # an objective that reads the batch's layout (e.g. forget examples first, then retain
    # ones) needs every pass to hold whole batches: the trainer then splits only seeds
    whole_batches: bool = False

    def objective(self, trainer: TrainerView, inputs: torch.Tensor, outputs: torch.Tensor, targets: torch.Tensor,
                  members: slice) -> torch.Tensor | None:
        """An objective replacing the task loss of the seeds `members` on this
        pass, shape [len(members)], or None to keep the task loss (e.g. gradient
        ascent on a forget set). Set `whole_batches` if it reads the batch's layout."""
        return None

    def loss(self, trainer: TrainerView, inputs: torch.Tensor, outputs: torch.Tensor, targets: torch.Tensor,
             members: slice) -> torch.Tensor | None:
        """An extra loss for the seeds `members` (a slice of the ensemble: large
        models train in groups of seeds) given their inputs, outputs and
        targets on one pass, shape [len(members)], or None. A mean over the
        pass's examples, or independent of them (e.g. a penalty on
        trainer.params[k][members])."""
        return None

    def after_backward(self, trainer: TrainerView) -> None:
        """Change the gradients (p.grad of trainer.params) in place."""

    def after_step(self, trainer: TrainerView) -> None:
        """Change the weights in place."""

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Everything the next updates depend on, as tensors (for checkpoints)."""
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        pass
