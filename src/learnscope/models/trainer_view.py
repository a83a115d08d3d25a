"""What probes and interventions may touch of the trainer that runs them:
a Protocol, so they are written against these names alone (the trainer,
a layer above them, satisfies it; mypy checks that it does)."""

from __future__ import annotations

from typing import Literal, Protocol

import torch

from learnscope.models.base import EnsembleModel
from learnscope.spec import Experiment, Recipe
from learnscope.tasks.base import Block, TaskInfo


class DataView(Protocol):
    """The ensemble's data: per split, inputs and targets stacked on a seed axis."""

    info: TaskInfo
    splits: dict[str, tuple[torch.Tensor, torch.Tensor]]

    def size(self, split: str) -> int: ...

    def parts(self, split: str) -> tuple[str, ...]: ...


class SamplerView(Protocol):
    """The batch order: which block a step is in, which examples it may draw."""

    pool_mode: Literal["current", "seen", "all"]

    def block_index(self, step: int) -> int | None: ...


class TrainerView(Protocol):
    experiment: Experiment
    recipe: Recipe
    seeds: list[int]
    info: TaskInfo
    data: DataView
    sampler: SamplerView
    model: EnsembleModel
    params: list[torch.nn.Parameter]
    initial_params: list[torch.Tensor]
    blocks: list[Block] | None
    train_x: torch.Tensor
    train_y: torch.Tensor
    step: int

    @property
    def members(self) -> int: ...

    def loss_per_seed(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor: ...

    def sample(self, split: str, size: int, stream: str) -> tuple[torch.Tensor, torch.Tensor]: ...

    def gradients(self, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]: ...
