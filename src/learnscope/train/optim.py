"""Optimizers (the table of learnscope.optimizers, optionally wrapped in
⊥Grad) and learning-rate schedules over stacked parameters."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from learnscope.optimizers import OPTIMIZERS
from learnscope.spec import Recipe
from learnscope.stacked_optim import OrthoGrad, StackedOptimizer


def make_optimizer(recipe: Recipe, params: Iterable[torch.nn.Parameter]) -> StackedOptimizer:
    """The recipe's optimizer; with `recipe.orthograd`, wrapped in ⊥Grad."""
    optimizer = OPTIMIZERS[recipe.optimizer].build(list(params), recipe)
    return OrthoGrad(optimizer) if recipe.orthograd else optimizer


def lr_factor(recipe: Recipe, step: int) -> float:
    """Multiplier of the base learning rate for update number `step` (0-based)."""
    if recipe.warmup_steps and step < recipe.warmup_steps:
        return (step + 1) / recipe.warmup_steps
    if recipe.schedule == "constant":
        return 1.0
    span = max(recipe.steps - recipe.warmup_steps, 1)
    progress = min((step - recipe.warmup_steps) / span, 1.0)
    return recipe.min_lr_ratio + (1 - recipe.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def set_lr(optimizer: StackedOptimizer, recipe: Recipe, step: int) -> None:
    lr = recipe.lr * lr_factor(recipe, step)
    for group in optimizer.param_groups:
        group["lr"] = lr
