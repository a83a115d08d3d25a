"""Modular arithmetic tables, the grokking testbed: (a, b) -> a op b mod p.

Inputs are the token sequence [a, b, =] (vocabulary p + 1), as in the
transformer grokking papers; the MLP embeds each token and concatenates.
The train/test partition of the table is drawn per seed.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, model_validator

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

    @model_validator(mode="after")
    def _division_needs_prime(self):
        if _OPS[self.op] == "/" and not _is_prime(self.p):
            raise ValueError(f"division needs a prime modulus; {self.p} is not prime")
        return self

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
