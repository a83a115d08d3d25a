"""Modular arithmetic tables, the grokking testbed: (a, b) -> a op b mod p.

Inputs are the token sequence [a, b, =] (vocabulary p + 1), as in the
transformer grokking papers; the MLP embeds each token and concatenates.
The train/test partition of the table is drawn per seed.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, field_validator

from learnscope import registry
from learnscope.seeding import generator
from learnscope.tasks.base import Dataset, Task, TaskInfo, split_sizes

_OPS = {"+": "+", "-": "-", "−": "-", "*": "*", "×": "*", "x": "*", "/": "/", "÷": "/"}


def _is_prime(n: int) -> bool:
    return n >= 2 and all(n % d for d in range(2, int(n**0.5) + 1))


@registry.tasks.register("modular-arithmetic")
class ModularArithmetic(Task):
    p: int = Field(97, ge=2, le=1000, description="the modulus")
    op: Literal["+", "-", "−", "*", "×", "x", "/", "÷"] = "+"
    train_fraction: float = Field(0.4, gt=0, lt=1)

    @field_validator("op")
    @classmethod
    def _division_needs_prime(cls, op, info):
        p = info.data.get("p")
        if _OPS[op] == "/" and p is not None and not _is_prime(p):
            raise ValueError(f"division needs a prime modulus; p = {p} is not prime")
        return op

    @field_validator("train_fraction")
    @classmethod
    def _both_splits_non_empty(cls, train_fraction, info):
        p, op = info.data.get("p"), info.data.get("op")
        if p is not None and op is not None:
            n = p * (p - 1 if _OPS[op] == "/" else p)  # the table's size, as build() makes it
            n_train = int(round(n * train_fraction))
            if not 0 < n_train < n:
                raise ValueError(f"gives {n_train} training examples of {n}; both splits must be non-empty")
        return train_fraction

    def info(self) -> TaskInfo:
        return TaskInfo("tokens", (3,), self.p, "cross_entropy", ("train", "test"), vocab_size=self.p + 1)

    def build(self, seed: int) -> Dataset:
        p, op = self.p, _OPS[self.op]
        a, b = torch.meshgrid(torch.arange(p), torch.arange(1 if op == "/" else 0, p), indexing="ij")
        a, b = a.reshape(-1), b.reshape(-1)
        if op == "+":
            c = (a + b) % p
        elif op == "-":
            c = (a - b) % p
        elif op == "*":
            c = (a * b) % p
        else:
            inverse = torch.tensor([pow(int(v), p - 2, p) for v in b])
            c = (a * inverse) % p
        inputs = torch.stack([a, b, torch.full_like(a, p)], dim=1)
        n_train, _ = split_sizes(len(a), self.train_fraction, "task.train_fraction")
        order = torch.randperm(len(a), generator=generator(seed, "data", "split"))
        return Dataset(inputs, c, {"train": order[:n_train], "test": order[n_train:]})
