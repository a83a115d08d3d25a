"""The optimizers a recipe may name, in one table: how each is built over
stacked parameters and how many tensors of state it keeps per parameter
(what a checkpoint holds).

SGD, Adam and AdamW act elementwise, so one optimizer over parameters with
a seed axis is exactly S independent optimizers. (Anything that mixes
elements across a whole tensor, such as global-norm clipping, must be done
per seed.)"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch


class OptimizerSettings(Protocol):
    """What an optimizer reads of a recipe: read-only, so a frozen Recipe is one."""

    @property
    def lr(self) -> float: ...

    @property
    def weight_decay(self) -> float: ...

    @property
    def momentum(self) -> float: ...

    @property
    def betas(self) -> tuple[float, float]: ...


@dataclass(frozen=True)
class OptimizerKind:
    build: Callable[[Sequence[torch.nn.Parameter], OptimizerSettings], torch.optim.Optimizer]
    state_slots: int  # tensors of state per parameter (momentum, moments), at most
    uses: tuple[str, ...]  # the recipe fields it reads


def _sgd(params: Sequence[torch.nn.Parameter], r: OptimizerSettings) -> torch.optim.Optimizer:
    return torch.optim.SGD(list(params), lr=r.lr, momentum=r.momentum, weight_decay=r.weight_decay, foreach=True)


def _adam(cls: Any) -> Callable[[Sequence[torch.nn.Parameter], OptimizerSettings], torch.optim.Optimizer]:
    def build(params: Sequence[torch.nn.Parameter], r: OptimizerSettings) -> torch.optim.Optimizer:
        # the fused kernel: about 3x faster than foreach on CPU at every ensemble size measured
        return cls(list(params), lr=r.lr, betas=r.betas, weight_decay=r.weight_decay, fused=True)

    return build


OPTIMIZERS: dict[str, OptimizerKind] = {
    "sgd": OptimizerKind(_sgd, 1, ("lr", "momentum", "weight_decay")),
    "adam": OptimizerKind(_adam(torch.optim.Adam), 2, ("lr", "betas", "weight_decay")),
    "adamw": OptimizerKind(_adam(torch.optim.AdamW), 2, ("lr", "betas", "weight_decay")),
}
