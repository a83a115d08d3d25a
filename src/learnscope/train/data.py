"""Per-seed datasets stacked on the seed axis, one tensor pair per split,
materialized once so the hot path only indexes (no DataLoader)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from learnscope.errors import SpecError
from learnscope.seeding import generator
from learnscope.tasks.base import Task


class EnsembleData:
    def __init__(self, task: Task, seeds: Sequence[int], device: str | torch.device = "cpu"):
        self.info = task.info()
        datasets = [task.build(seed) for seed in seeds]
        self.splits: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        for name in self.info.splits:
            sizes = {len(d.splits[name]) for d in datasets}
            if len(sizes) != 1:  # a task bug, not user input: seeds must agree on split sizes
                raise RuntimeError(f"task '{task.registry_name}' gave split '{name}' different sizes across seeds")
            if sizes == {0}:
                raise SpecError("task", f"split '{name}' is empty")
            x = torch.stack([d.inputs[d.splits[name]] for d in datasets]).to(device)
            y = torch.stack([d.targets[d.splits[name]] for d in datasets]).to(device)
            self.splits[name] = (x, y)

    def size(self, split: str) -> int:
        return self.splits[split][1].shape[1]


class BatchSampler:
    """Minibatches drawn without replacement, reshuffled every epoch.

    Epoch e of seed s is a permutation drawn from a generator derived from
    (s, "batch", e): the position in the stream is a function of the step
    alone, so resuming needs no sampler state and seed k's batches are the
    same in any ensemble. Incomplete last batches are dropped.
    """

    def __init__(self, seeds: Sequence[int], n: int, batch_size: int | None):
        self.seeds = list(seeds)
        self.n = n
        self.batch_size = batch_size
        self.full_batch = batch_size is None or batch_size >= n
        self.per_epoch = 1 if self.full_batch else n // batch_size
        self._epoch = -1
        self._perms: torch.Tensor | None = None
        self._offsets = (torch.arange(len(self.seeds)) * n).unsqueeze(1)  # seed s's examples start at s * n

    def indices(self, step: int) -> torch.Tensor | None:
        """Indices [S, B] of update number `step` (0-based); None = full batch."""
        if self.full_batch:
            return None
        epoch, position = divmod(step, self.per_epoch)
        if epoch != self._epoch:
            self._perms = torch.stack(
                [torch.randperm(self.n, generator=generator(seed, "batch", epoch)) for seed in self.seeds]
            )
            self._epoch = epoch
        start = position * self.batch_size
        return self._perms[:, start : start + self.batch_size]

    def take(self, step: int, *stacked: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The examples of update `step` from each per-seed tensor [S, n, ...],
        as [S, B, ...]; the tensors themselves in full-batch mode. One
        index_select over the flattened seed axis: indexing with a
        broadcast (seed, example) pair is several times slower."""
        idx = self.indices(step)
        if idx is None:
            return stacked
        flat = (idx + self._offsets).reshape(-1)
        return tuple(
            t.reshape(-1, *t.shape[2:]).index_select(0, flat.to(t.device)).view(t.shape[0], -1, *t.shape[2:])
            for t in stacked
        )
