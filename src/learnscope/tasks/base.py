"""What every task provides: a description the model builder reads
(`TaskInfo`) and, per seed, tensors with named splits (`Dataset`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from learnscope.errors import SpecError
from learnscope.spec import TaskSpec


@dataclass(frozen=True)
class TaskInfo:
    input_kind: Literal["tokens", "vector"]
    input_shape: tuple[int, ...]  # (seq_len,) for tokens, (dim,) for vectors
    output_dim: int
    loss: Literal["cross_entropy", "mse"]
    splits: tuple[str, ...]
    vocab_size: int | None = None

    @property
    def is_classification(self) -> bool:
        return self.loss == "cross_entropy"

    @property
    def num_classes(self) -> int | None:
        return self.output_dim if self.is_classification else None


@dataclass
class Dataset:
    """One seed's data: every example once, splits as index tensors."""

    inputs: torch.Tensor  # [N, *input_shape]; long for tokens, float for vectors
    targets: torch.Tensor  # [N] long for classes, [N, out] float for regression
    splits: dict[str, torch.Tensor]  # name -> long indices into the N examples


class Task(TaskSpec):
    """A task is a spec (its fields are its parameters) that can build data."""

    def info(self) -> TaskInfo:
        raise NotImplementedError

    def build(self, seed: int) -> Dataset:
        raise NotImplementedError


def split_sizes(n: int, fraction: float, what: str) -> tuple[int, int]:
    """Sizes of a (train, rest) split that leaves both sides non-empty."""
    n_train = int(round(n * fraction))
    if n_train < 1 or n_train >= n:
        raise SpecError(what, f"gives {n_train} training examples of {n}; both splits must be non-empty")
    return n_train, n - n_train
