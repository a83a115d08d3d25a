"""What every task provides: a description the model builder reads
(`TaskInfo`) and, per seed, tensors with named splits (`Dataset`)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Literal

from learnscope.errors import SpecError
from learnscope.spec import TaskSpec

if TYPE_CHECKING:  # torch loads with the first task built: reading runs (Block, TaskInfo) needs none
    import torch


@dataclass(frozen=True)
class TaskInfo:
    input_kind: Literal["tokens", "vector"]
    input_shape: tuple[int, ...]  # (seq_len,) for tokens, (dim,) for vectors
    output_dim: int
    loss: Literal["cross_entropy", "mse"]
    splits: tuple[str, ...]
    vocab_size: int | None = None
    # targets per position [.., T] (next tokens, -100 where unscored) and outputs per position:
    # a sequence task, for models that read every position (the transformer)
    sequence: bool = False
    experiences: int = 0  # a stream's experience count (its splits train/e, test/e); 0: not a stream
    # task-incremental streams: the classes of each experience. Only the classes of an
    # example's own experience compete for it (one head per task, the task id given).
    class_groups: tuple[tuple[int, ...], ...] | None = None
    # every example's positions carry identities ([T] longs: what each position holds, equal
    # for the same item), so head detectors defined on repeated tokens read vector sequences
    identities: bool = False

    @property
    def is_classification(self) -> bool:
        return self.loss == "cross_entropy"

    @property
    def num_classes(self) -> int | None:
        return self.output_dim if self.is_classification else None

    def restrict_outputs(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Outputs with the logits outside each example's class group at -inf
        (unchanged when the task has no groups): outputs [..., C], targets [...]."""
        if self.class_groups is None:
            return outputs
        return outputs.masked_fill(~self._allowed.to(outputs.device)[targets], float("-inf"))

    @cached_property
    def _allowed(self) -> torch.Tensor:
        """[C, C]: allowed[y, c] iff class c shares class y's group."""
        import torch

        allowed = torch.zeros(self.output_dim, self.output_dim, dtype=torch.bool)
        for group in self.class_groups or ():
            index = torch.tensor(group)
            allowed[index.unsqueeze(1), index] = True
        return allowed


@dataclass(frozen=True)
class Block:
    """A stretch of training on one experience of a stream: updates start..stop-1."""

    start: int
    stop: int
    experience: int


@dataclass
class Dataset:
    """One seed's data: every example once, splits as index tensors."""

    inputs: torch.Tensor  # [N, *input_shape]; long for tokens, float for vectors
    targets: torch.Tensor  # [N] long for classes, [N, out] float for regression
    splits: dict[str, torch.Tensor]  # name -> long indices into the N examples
    # [N, T] long, when TaskInfo.identities: what each position holds (a token, a class)
    identities: torch.Tensor | None = None


class Task(TaskSpec):
    """A task is a spec (its fields are its parameters) that can build data."""

    def info(self) -> TaskInfo:
        raise NotImplementedError

    def build(self, seed: int) -> Dataset:
        raise NotImplementedError

    def blocks(self, steps: int) -> list[Block] | None:
        """For a stream: which experience each update trains on, as blocks
        covering 0..steps. None for an ordinary task (one pool throughout)."""
        return None

    def training_blocks(self, steps: int, train_split: str) -> list[Block] | None:
        """The blocks updates follow: a stream's schedule when they draw from its
        whole `train`, none when from one split (one experience alone)."""
        return self.blocks(steps) if train_split == "train" else None


def split_sizes(n: int, fraction: float, what: str) -> tuple[int, int]:
    """Sizes of a (train, rest) split that leaves both sides non-empty."""
    n_train = int(round(n * fraction))
    if n_train < 1 or n_train >= n:
        raise SpecError(what, f"gives {n_train} training examples of {n}; both splits must be non-empty")
    return n_train, n - n_train
