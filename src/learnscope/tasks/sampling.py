"""Stratified draws with exact class counts, shared by the real-data tasks.

learnscope stacks every seed's data into one tensor per split, so a split's
size, and how many examples of each class it holds (streams cut splits by
class), must not depend on the seed. Only *which* examples are drawn does.
"""

from __future__ import annotations

import torch


def class_quota(class_counts: torch.Tensor, n: int) -> torch.Tensor:
    """Per-class counts that sum to n, proportional to `class_counts`:
    each class gets floor(n * n_c / N), and the examples still missing go one
    each to the largest remainders (ties to the lower class). Integer
    arithmetic throughout, so the result is exact and machine-independent."""
    total = int(class_counts.sum())
    share = class_counts.long() * n
    counts = share // total
    remainder = share % total
    short = n - int(counts.sum())
    counts[torch.argsort(remainder, descending=True, stable=True)[:short]] += 1
    return counts


def stratified_choice(labels: torch.Tensor, n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(chosen, rest): indices into `labels` of n examples holding each class
    exactly `class_quota` times, uniformly drawn within each class, and of the
    examples left over. Both in random order, so taking the first k of a
    split (a probe's `max_examples`) is itself a uniform subsample."""
    counts = torch.bincount(labels)
    quota = class_quota(counts, n)
    shuffled = torch.randperm(len(labels), generator=gen)
    by_class = shuffled[torch.argsort(labels[shuffled], stable=True)]  # grouped by class, random within
    label = labels[by_class]
    rank = torch.arange(len(labels)) - (torch.cumsum(counts, 0) - counts)[label]  # position within its class
    take = rank < quota[label]
    chosen, rest = by_class[take], by_class[~take]
    return chosen[torch.randperm(len(chosen), generator=gen)], rest[torch.randperm(len(rest), generator=gen)]
