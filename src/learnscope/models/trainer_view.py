"""What probes and interventions may touch of the trainer that runs them:
a Protocol, so they are written against these names alone (the trainer,
a layer above them, satisfies it; mypy checks that it does)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Protocol

import torch

from learnscope.models.base import Edit, EnsembleModel
from learnscope.spec import Experiment, Recipe
from learnscope.tasks.base import Block, TaskInfo

if TYPE_CHECKING:
    from learnscope.stacked_optim import StackedOptimizer


class DataView(Protocol):
    """The ensemble's data: per split, inputs and targets stacked on a seed axis."""

    @property
    def info(self) -> TaskInfo: ...

    @property
    def splits(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]: ...

    def size(self, split: str) -> int: ...

    def parts(self, split: str) -> tuple[str, ...]: ...

    def identities(self, split: str) -> torch.Tensor: ...


class SamplerView(Protocol):
    """The batch order: which block a step is in, which examples it may draw.
    `pool_mode` is settable: an intervention may widen the pool (joint training)."""

    pool_mode: Literal["current", "seen", "all"]

    def block_index(self, step: int) -> int | None: ...

    def drawn_batch(self) -> int: ...


class TrainerView(Protocol):
    """Read-only properties: a probe or intervention reads these (and may change
    the tensors in place where its hooks say so), but never rebinds them."""

    @property
    def experiment(self) -> Experiment: ...

    @property
    def recipe(self) -> Recipe: ...

    @property
    def seeds(self) -> list[int]: ...

    @property
    def info(self) -> TaskInfo: ...

    @property
    def data(self) -> DataView: ...

    @property
    def sampler(self) -> SamplerView: ...

    @property
    def model(self) -> EnsembleModel: ...

    @property
    def params(self) -> list[torch.nn.Parameter]: ...

    @property
    def initial_params(self) -> list[torch.Tensor]: ...

    @property
    def optimizer(self) -> StackedOptimizer: ...  # its state may be changed in place (a reset of moments)

    @property
    def blocks(self) -> list[Block] | None: ...

    @property
    def train_x(self) -> torch.Tensor: ...

    @property
    def train_y(self) -> torch.Tensor: ...

    @property
    def step(self) -> int: ...

    @property
    def members(self) -> int: ...

    def loss_per_seed(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor: ...

    def sample(self, split: str, size: int, stream: str) -> tuple[torch.Tensor, torch.Tensor]: ...

    def gradients(self, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]: ...

    def site_edits(self, members: slice, examples: slice) -> dict[str, Edit]: ...
