"""Optimizers and learning-rate schedules over stacked parameters.

SGD, Adam and AdamW act elementwise, so one optimizer over parameters with
a seed axis is exactly S independent optimizers. (Anything that mixes
elements across a whole tensor, such as global-norm clipping, must be done
per seed.)"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from learnscope.spec import Recipe


def make_optimizer(recipe: Recipe, params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
    params = list(params)
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay, foreach=True
        )
    cls = torch.optim.AdamW if recipe.optimizer == "adamw" else torch.optim.Adam
    # the fused kernel: about 3x faster than foreach on CPU at every ensemble size measured
    return cls(params, lr=recipe.lr, betas=recipe.betas, weight_decay=recipe.weight_decay, fused=True)


def lr_factor(recipe: Recipe, step: int) -> float:
    """Multiplier of the base learning rate for update number `step` (0-based)."""
    if recipe.warmup_steps and step < recipe.warmup_steps:
        return (step + 1) / recipe.warmup_steps
    if recipe.schedule == "constant":
        return 1.0
    span = max(recipe.steps - recipe.warmup_steps, 1)
    progress = min((step - recipe.warmup_steps) / span, 1.0)
    return recipe.min_lr_ratio + (1 - recipe.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def set_lr(optimizer: torch.optim.Optimizer, recipe: Recipe, step: int) -> None:
    lr = recipe.lr * lr_factor(recipe, step)
    for group in optimizer.param_groups:
        group["lr"] = lr
