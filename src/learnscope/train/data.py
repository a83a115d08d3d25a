"""Per-seed datasets stacked on the seed axis, one tensor pair per split,
materialized once so the hot path only indexes (no DataLoader)."""

from __future__ import annotations

import bisect
from collections import OrderedDict
from collections.abc import Sequence
from typing import Literal

import torch

from learnscope.errors import SpecError
from learnscope.seeding import generator
from learnscope.tasks.base import Block, Dataset, Task

# Datasets built in this process, by (task class, parameters, seed), most recent last: a task's build is
# a pure function of them, and a phenomenon's arms or a sweep's trials rebuild the same data per arm
# (a Markov corpus's sampling was a third of a 36-arm learning-rate sweep). EnsembleData only reads a
# dataset (it copies the splits out), so one built copy serves every arm. Bounded in bytes.
_BUILT: OrderedDict[tuple[str, str, int], Dataset] = OrderedDict()
BUILT_BYTES = 32 * 2**20  # small next to what a run allocates: the memory estimate stays honest


def _nbytes(dataset: Dataset) -> int:
    tensors = [dataset.inputs, dataset.targets, *dataset.splits.values()]
    if dataset.identities is not None:
        tensors.append(dataset.identities)
    return sum(t.element_size() * t.nelement() for t in tensors)


def built(task: Task, seed: int) -> Dataset:
    """`task.build(seed)`, or the same dataset built before in this process."""
    key = (f"{type(task).__module__}.{type(task).__qualname__}", task.model_dump_json(), seed)
    if key in _BUILT:
        _BUILT.move_to_end(key)
        return _BUILT[key]
    dataset = task.build(seed)
    size = _nbytes(dataset)
    if size <= BUILT_BYTES:
        _BUILT[key] = dataset
        while sum(_nbytes(d) for d in _BUILT.values()) > BUILT_BYTES:
            _BUILT.popitem(last=False)
    return dataset


class EnsembleData:
    def __init__(self, task: Task, seeds: Sequence[int], device: str | torch.device = "cpu"):
        self.info = task.info()
        self.splits: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self._identities: dict[str, torch.Tensor] = {}
        # one seed's dataset at a time, copied into the stacked splits on the device: the host
        # never holds every seed's dataset beside the stacked splits (that was three times the data)
        for k, seed in enumerate(seeds):
            dataset = built(task, seed)
            for name in self.info.splits:
                index = dataset.splits[name]
                if k == 0:
                    if len(index) == 0:
                        raise SpecError("task", f"split '{name}' is empty")
                    self.splits[name] = (_stacked(dataset.inputs, len(seeds), len(index), device),
                                         _stacked(dataset.targets, len(seeds), len(index), device))
                x, y = self.splits[name]
                if len(index) != y.shape[1]:  # seeds are stacked: a task (with these parameters) must keep split sizes fixed
                    raise SpecError("task", f"split '{name}' has {y.shape[1]} examples under seed {seeds[0]} but "
                                    f"{len(index)} under seed {seed}; these parameters give seed-dependent split "
                                    f"sizes, which an ensemble cannot stack")
                x[k] = dataset.inputs[index]
                y[k] = dataset.targets[index]
                if self.info.identities:
                    if dataset.identities is None:
                        raise SpecError("task", "the task declares position identities but built none")
                    if k == 0:
                        self._identities[name] = _stacked(dataset.identities, len(seeds), len(index), device)
                    self._identities[name][k] = dataset.identities[index]

    def size(self, split: str) -> int:
        return self.splits[split][1].shape[1]

    def identities(self, split: str) -> torch.Tensor:
        """[S, n, T]: what each position of the split's examples holds: the tokens
        themselves, or the identities a task of vector sequences declares."""
        if self.info.input_kind == "tokens":
            return self.splits[split][0]
        if split not in self._identities:
            raise SpecError("task", "this task's vector inputs carry no position identities")
        return self._identities[split]

    def parts(self, split: str) -> tuple[str, ...]:
        """The splits whose examples, in order, make up `split` (a stream's
        `train` and `test` are its experiences'); () if none do."""
        if self.info.experiences and split in ("train", "test"):
            return tuple(f"{split}/{e}" for e in range(self.info.experiences))
        return ()

    def experience_ranges(self) -> list[tuple[int, int]]:
        """For a stream: where each experience's examples lie in `train` (in order)."""
        ends = [0]
        for e in range(self.info.experiences):
            ends.append(ends[-1] + self.size(f"train/{e}"))
        return list(zip(ends[:-1], ends[1:]))


Pool = Literal["current", "seen", "all"]


class BatchSampler:
    """Minibatches drawn without replacement from the pool of training
    examples, reshuffled every epoch of the pool.

    An ordinary task has one pool, every training example. A stream's pool
    is the current block's experience (`current`), every experience met so
    far (`seen`), or all of them from the start (`all`: joint training, the
    upper bound). Epoch e of seed s is a permutation drawn from a generator
    derived from (s, "batch", e), or (s, "batch", block, e) within a block:
    the position in the stream is a function of the step alone, so resuming
    needs no sampler state and seed k's batches are the same in any
    ensemble. Incomplete last batches are dropped; a batch that covers the
    whole pool is the pool itself.
    """

    def __init__(self, seeds: Sequence[int], n: int, batch_size: int | None, blocks: list[Block] | None = None,
                 ranges: list[tuple[int, int]] | None = None):
        self.seeds = list(seeds)
        self.n = n
        self.batch_size = batch_size
        self.blocks = blocks
        self.ranges = ranges
        self.pool_mode: Pool = "current"
        self._starts = [b.start for b in blocks] if blocks else []
        self._key: tuple | None = None
        self._perms: torch.Tensor | None = None

    @property
    def full_batch(self) -> bool:
        return self.batch_size is None or self.batch_size >= self.largest_pool()

    def drawn_batch(self) -> int:
        """Examples per seed an update draws (before interventions add any)."""
        if self.full_batch:
            return self.largest_pool()
        assert self.batch_size is not None  # None is the full batch
        return self.batch_size

    def largest_pool(self) -> int:
        if not self.blocks or self.pool_mode == "all":
            return self.n
        return max(self._range(i)[1] - self._range(i)[0] for i in range(len(self.blocks)))

    def block_index(self, step: int) -> int | None:
        return bisect.bisect_right(self._starts, step) - 1 if self.blocks else None

    def _range(self, block: int) -> tuple[int, int]:
        assert self.blocks is not None and self.ranges is not None  # only a stream has blocks, and its ranges
        if self.pool_mode == "seen":
            return 0, self.ranges[max(b.experience for b in self.blocks[: block + 1])][1]
        return self.ranges[self.blocks[block].experience]

    def indices(self, step: int) -> torch.Tensor | slice:
        """Indices [S, B] into `train` of update number `step` (0-based), or a
        slice when the batch is the whole pool."""
        block = self.block_index(step) if self.pool_mode != "all" else None
        low, high = (0, self.n) if block is None else self._range(block)
        size = high - low
        if self.batch_size is None or self.batch_size >= size:
            return slice(low, high)
        per_epoch = size // self.batch_size
        epoch, position = divmod(step - (0 if block is None else self._starts[block]), per_epoch)
        key = ("batch", epoch) if block is None else ("batch", block, epoch)
        if key != self._key:
            self._perms = torch.stack([torch.randperm(size, generator=generator(seed, *key)) for seed in self.seeds])
            self._key = key
        assert self._perms is not None  # drawn with the first key
        start = position * self.batch_size
        return self._perms[:, start : start + self.batch_size] + low

    def take(self, step: int, *stacked: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The examples of update `step` from each per-seed tensor [S, n, ...], as [S, B, ...]."""
        idx = self.indices(step)
        if isinstance(idx, slice):
            return tuple(t[:, idx] for t in stacked)
        return gather(idx, *stacked)


def _stacked(like: torch.Tensor, seeds: int, examples: int, device: str | torch.device) -> torch.Tensor:
    """Room for a split of every seed: [seeds, examples, *like's example shape]."""
    return torch.empty(seeds, examples, *like.shape[1:], dtype=like.dtype, device=device)


def gather(idx: torch.Tensor, *stacked: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Per-seed examples idx [S, B] of each tensor [S, n, ...], as [S, B, ...].
    One index_select over the flattened seed axis: indexing with a broadcast
    (seed, example) pair is several times slower."""
    S, n = stacked[0].shape[:2]
    flat = (idx + torch.arange(S, device=idx.device).unsqueeze(1) * n).reshape(-1)
    return tuple(
        t.reshape(-1, *t.shape[2:]).index_select(0, flat.to(t.device)).view(S, -1, *t.shape[2:]) for t in stacked
    )
