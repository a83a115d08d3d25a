"""The optimizers a recipe may name, in one table: how each is built over
stacked parameters and how many tensors of state it keeps per parameter
(what a checkpoint holds).

SGD, Adam and AdamW act elementwise, so one optimizer over parameters with
a seed axis is exactly S independent optimizers. (Anything that mixes
elements across a whole tensor, such as global-norm clipping, must be done
per seed.)

The updates are learnscope.stacked_optim's, the kernels torch.optim runs,
without torch.optim (whose first construction imports torch._dynamo, about
a second). This module imports no torch: the spec validates optimizer names
against the table without loading it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import torch

    from learnscope.stacked_optim import StackedOptimizer


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
    build: Callable[[Sequence[torch.nn.Parameter], OptimizerSettings], StackedOptimizer]
    state_slots: int  # tensors of state per parameter (momentum, moments), at most
    uses: tuple[str, ...]  # the recipe fields it reads


def _sgd(params: Sequence[torch.nn.Parameter], r: OptimizerSettings) -> StackedOptimizer:
    from learnscope.stacked_optim import SGD  # torch.optim.SGD(foreach=True)'s kernels

    return SGD(params, lr=r.lr, momentum=r.momentum, weight_decay=r.weight_decay)


def _adam(decoupled: bool) -> Callable[[Sequence[torch.nn.Parameter], OptimizerSettings], StackedOptimizer]:
    def build(params: Sequence[torch.nn.Parameter], r: OptimizerSettings) -> StackedOptimizer:
        # torch.optim.Adam/AdamW(fused=True)'s kernel: about 3x faster than foreach on CPU at
        # every ensemble size measured
        from learnscope.stacked_optim import Adam, AdamW

        return (AdamW if decoupled else Adam)(params, lr=r.lr, betas=r.betas, weight_decay=r.weight_decay)

    return build


OPTIMIZERS: dict[str, OptimizerKind] = {
    "sgd": OptimizerKind(_sgd, 1, ("lr", "momentum", "weight_decay")),
    "adam": OptimizerKind(_adam(decoupled=False), 2, ("lr", "betas", "weight_decay")),
    "adamw": OptimizerKind(_adam(decoupled=True), 2, ("lr", "betas", "weight_decay")),
}
