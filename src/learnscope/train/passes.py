"""How many examples of each seed go through one forward/backward pass.

A batch is accumulated over passes whose activations (the tensors autograd
keeps for backward) fit a fixed budget: on a CPU a pass whose working set
spills out of the caches runs at memory speed, and an S-seed ensemble's
working set is S times one seed's, so without this a large ensemble ran
slower than its seeds one after another. The budget is a constant, not read
off the machine, so a spec gives the same passes, and the same numbers,
everywhere.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

# Measured on the benchmark configurations (benchmarks/ensemble.py): passes of
# 8-24 MiB of saved activations ran fastest at every ensemble size.
PASS_BUDGET_BYTES = 16 * 2**20
# Below this many examples per seed, per-pass overhead outweighs cache reuse.
MIN_EXAMPLES_PER_PASS = 16


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
    sizes = [saved_bytes(lambda k=k: loss(x[:, :k], y[:, :k])) for k in (small, large)]
    return max(sizes[1] - sizes[0], 0) / (members * (large - small))


def examples_per_pass(members: int, batch: int, bytes_per_example: float, budget: int = PASS_BUDGET_BYTES) -> int:
    """Examples per seed in one pass: as many as fit the budget, passes of equal
    size (no small ragged last pass), never fewer than MIN_EXAMPLES_PER_PASS."""
    fit = budget // max(members * bytes_per_example, 1.0)
    per_pass = int(min(batch, max(MIN_EXAMPLES_PER_PASS, fit)))
    passes = math.ceil(batch / per_pass)
    return math.ceil(batch / passes)
