"""Modular arithmetic tables, the grokking testbed: (a, b) -> a op b mod p.

Inputs are the token sequence [a, b, =] (vocabulary p + 1), as in the
transformer grokking papers; the MLP embeds each token and concatenates.
The train/test partition of the table is drawn per seed.

With `label_noise` = xi > 0, a fraction xi of the training examples (drawn
per seed) get a wrong label: the true one shifted by a uniform 1..p-1, so
uniform over the other p - 1 residues (Doshi et al., "To grok or not to
grok", corrupt to a uniform label over all p, which leaves about 1/p of
them right; here every corrupted label is wrong, so accuracy on them
measures memorization alone). The test split keeps the true labels, and
the train split is also offered as `train_clean` and `train_noisy` (the
corrupted examples).
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
    label_noise: float = Field(0.0, ge=0, lt=1, description="fraction of training labels replaced by a wrong "
                               "residue (test labels stay true)")

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

    @field_validator("label_noise")
    @classmethod
    def _noise_leaves_both_parts(cls, label_noise, info):
        p, op, train_fraction = info.data.get("p"), info.data.get("op"), info.data.get("train_fraction")
        if label_noise > 0 and None not in (p, op, train_fraction):
            n_train = int(round(p * (p - 1 if _OPS[op] == "/" else p) * train_fraction))
            n_noisy = int(round(n_train * label_noise))
            if not 0 < n_noisy < n_train:
                raise ValueError(f"gives {n_noisy} corrupted labels of {n_train} training examples; "
                                 "train_clean and train_noisy must both be non-empty")
        return label_noise

    def info(self) -> TaskInfo:
        splits = ("train", "test") + (("train_clean", "train_noisy") if self.label_noise > 0 else ())
        return TaskInfo("tokens", (3,), self.p, "cross_entropy", splits, vocab_size=self.p + 1)

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
        train = order[:n_train]
        splits = {"train": train, "test": order[n_train:]}
        if self.label_noise > 0:  # its own stream: the split above is the same with or without noise
            gen = generator(seed, "data", "label_noise")
            n_noisy = int(round(n_train * self.label_noise))
            is_noisy = torch.zeros(n_train, dtype=torch.bool)
            is_noisy[torch.randperm(n_train, generator=gen)[:n_noisy]] = True
            shift = torch.randint(1, p, (n_noisy,), generator=gen)
            c = c.clone()
            c[train[is_noisy]] = (c[train[is_noisy]] + shift) % p  # always another residue
            splits["train_clean"] = train[~is_noisy]
            splits["train_noisy"] = train[is_noisy]
        return Dataset(inputs, c, splits)
