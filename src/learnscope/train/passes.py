"""How a batch is cut into forward/backward passes: which seeds and how
many of their examples go through one pass.

A pass's activations (the tensors autograd keeps for backward) should fit a
fixed budget: on a CPU a pass whose working set spills out of the caches
runs at memory speed, and an S-seed ensemble's working set is S times one
seed's. Within the budget, examples come first and seeds second: a pass
holds as many of one seed's examples as fit (up to the batch), then as many
seeds as fit. Small per-step work (minibatches, small models) puts every
seed in one pass, where one batched matmul serves all; large per-step work
runs seeds in groups, each with matrices as large as a single run's, so a
64-seed ensemble of a compute-bound model runs no slower than 64 single
runs. The budget is a constant, not read off the machine; the one machine
setting the plan reads is the number of intra-op threads.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch

# Measured on the benchmark configurations (benchmarks/ensemble.py): passes of
# 8-24 MiB of saved activations ran fastest at every ensemble size.
PASS_BUDGET_BYTES = 16 * 2**20
# Below this many examples per seed, per-pass overhead outweighs cache reuse.
MIN_EXAMPLES_PER_PASS = 16


@dataclass(frozen=True)
class PassPlan:
    seeds: int  # members per pass
    examples: int  # examples of each member per pass

    def passes(self, members: int, batch: int) -> list[tuple[slice, slice]]:
        """(members, examples) of every pass of one update, seed group by seed group."""
        return [
            (slice(m, min(m + self.seeds, members)), slice(e, min(e + self.examples, batch)))
            for m in range(0, members, self.seeds)
            for e in range(0, batch, self.examples)
        ]


def saved_bytes(forward: Callable[[], object]) -> int:
    """Bytes of the distinct storages autograd saves for backward while `forward()` runs."""
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        forward()
    return sum(storages.values())


def activation_bytes_per_example(
    loss: Callable[[torch.Tensor, torch.Tensor], object], x: torch.Tensor, y: torch.Tensor
) -> float:
    """Saved-activation bytes per example and seed of `loss(x, y)` on stacked
    inputs [S, n, ...]: the growth between two small batches, so that the
    parameters autograd also saves cancel out."""
    members, n = y.shape[0], y.shape[1]
    small, large = min(2, n), min(6, n)
    if large == small:
        return 0.0

    def forward(k: int) -> object:
        return loss(x[:, :k], y[:, :k])

    sizes = [saved_bytes(partial(forward, k)) for k in (small, large)]
    return max(sizes[1] - sizes[0], 0) / (members * (large - small))


def _even(total: int, most: int, multiple: int = 1) -> int:
    """The part size that cuts `total` into as few parts of at most `most` as
    possible, all of about equal size (no small ragged last part), rounded up
    to a multiple of `multiple`."""
    parts = math.ceil(total / most)
    return min(total, math.ceil(math.ceil(total / parts) / multiple) * multiple)


def plan_passes(members: int, batch: int, bytes_per_example: float, examples: int | None = None,
                budget: int = PASS_BUDGET_BYTES, threads: int | None = None) -> PassPlan:
    """The passes of one update of `members` seeds on `batch` examples each;
    `examples` fixes the examples per seed per pass (recipe.microbatch).

    Seeds per pass are a multiple of the intra-op threads: each thread then
    runs whole matrix products of its own (measured: one seed per pass, its
    product split across 2 threads, ran 10-20% slower than 2 seeds per pass)."""
    threads = threads or torch.get_num_threads()
    per_example = max(bytes_per_example, 1.0)
    if examples is None:
        examples = int(max(MIN_EXAMPLES_PER_PASS, budget // per_example))
    examples = min(batch, examples)
    fit = int(budget // (examples * per_example))
    seeds = min(members, max(threads, fit - fit % threads))
    return PassPlan(seeds=_even(members, seeds, threads), examples=_even(batch, examples))
