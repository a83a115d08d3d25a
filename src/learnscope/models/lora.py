"""LoRA: low-rank adapters on a model's linear layers, the rest frozen.

`model: {name: lora, base: {name: mlp, ...}, rank: r}` builds the base model,
freezes every one of its parameters, and gives each adapted linear layer
(`targets`, module names such as `hidden.0` or `head`; all of them by
default) two trained factors per seed, A [in, r] and B [r, out]:

    y = x W + b + (alpha / r) · x A B

as in "LoRA: Low-Rank Adaptation of Large Language Models" (Hu et al.) and
PEFT's defaults: A uniform in ±1/sqrt(in) (Kaiming-uniform with a = sqrt(5)),
B zero, so the adapted model starts as the base model. `alpha` defaults to
the rank (a scale of 1).

The base parameters keep their names, so `init_from` a run of the plain base
model loads them; the factors (`NAME.lora_a`, `NAME.lora_b`) start at their
own initialization (`EnsembleModel.fresh`), drawn per seed from the seed's
own generator: seed k's adapters never depend on the other seeds. Only the
factors train (the trainer optimizes the parameters that require grad).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from pydantic import Field, SerializeAsAny, field_validator
from torch import nn

from learnscope import registry
from learnscope.errors import SpecError, one_of
from learnscope.models import layers
from learnscope.models.base import EnsembleModel, Model
from learnscope.seeding import generator
from learnscope.spec import ModelSpec, resolve_component
from learnscope.tasks.base import TaskInfo


@registry.models.register("lora")
class LoRA(Model):
    base: SerializeAsAny[ModelSpec] = Field(description="the model adapted: any built-in model with linear layers")
    rank: int = Field(4, ge=1, le=4096, description="r, the adapters' rank")
    alpha: float | None = Field(None, gt=0, description="the adapters' output is scaled by alpha / r (default: r)")
    targets: list[str] | None = Field(None, min_length=1, description="the linear layers adapted (default: all)")
    train_full: list[str] = Field([], description="modules trained in full beside the adapters (PEFT's "
                                  "modules_to_save), e.g. a new task's head")

    @field_validator("base", mode="before")
    @classmethod
    def _resolve_base(cls, value):
        base = resolve_component(registry.models, ModelSpec, value, "model.base")
        if isinstance(base, LoRA):
            raise SpecError("model.base", "is already a lora model; adapt the plain model once")
        return base

    def build(self, info: TaskInfo, seeds: Sequence[int]) -> EnsembleModel:
        assert isinstance(self.base, Model)  # every registered model is one
        net = self.base.build(info, seeds)
        linears = {name: m for name, m in net.named_modules() if isinstance(m, layers.Linear)}
        if not linears:
            raise SpecError("model.base", f"'{self.base.registry_name}' has no stacked linear layers to adapt; "
                            f"lora adapts the built-in models (mlp, transformer, ...)")
        for target in self.targets or []:
            if target not in linears:
                raise SpecError("model.targets", f"unknown linear layer '{target}'; {one_of(target, list(linears))}")
        chosen = [name for name in linears if self.targets is None or name in self.targets]
        modules = dict(net.named_modules())
        for name in self.train_full:
            if name not in modules or not name:
                valid = [n for n, m in net.named_modules() if n and any(True for _ in m.parameters())]
                raise SpecError("model.train_full", f"unknown module '{name}'; {one_of(name, valid)}")
            if name in chosen:
                raise SpecError("model.train_full", f"'{name}' is adapted (model.targets): train it in full or "
                                f"adapt it, not both")
        trained = {id(p) for name in self.train_full for p in modules[name].parameters()}
        for p in net.parameters():
            p.requires_grad_(id(p) in trained)
        scale = (self.alpha if self.alpha is not None else self.rank) / self.rank
        for name in chosen:
            _adapt(linears[name], self.rank, scale)
        net.fresh = frozenset(f"{name}.{factor}" for name in chosen for factor in ("lora_a", "lora_b"))
        _initialize_adapters(net, chosen, seeds)
        return net


def _adapt(linear: layers.Linear, rank: int, scale: float) -> None:
    members, d_in, d_out = linear.weight.shape
    like = linear.weight
    linear.lora_a = nn.Parameter(torch.empty(members, d_in, rank, device=like.device, dtype=like.dtype))
    linear.lora_b = nn.Parameter(torch.empty(members, rank, d_out, device=like.device, dtype=like.dtype))

    def add_low_rank(module: nn.Module, args: tuple[torch.Tensor, ...], out: torch.Tensor) -> torch.Tensor:
        x = args[0]
        flat = x.reshape(x.shape[0], -1, x.shape[-1])
        # read at call time: a pass over a group of seeds swaps in the group's slices
        delta = torch.bmm(torch.bmm(flat, module.lora_a), module.lora_b)
        return out + scale * delta.reshape(out.shape)

    linear.register_forward_hook(add_low_rank)


def _initialize_adapters(net: nn.Module, chosen: list[str], seeds: Sequence[int]) -> None:
    modules = dict(net.named_modules())
    if any(modules[name].lora_a.is_meta for name in chosen):
        return  # shapes only (the memory estimate counts them)
    with torch.no_grad():
        for i, seed in enumerate(seeds):
            gen = generator(seed, "lora")
            for name in chosen:
                a, b = modules[name].lora_a, modules[name].lora_b
                bound = 1 / math.sqrt(a.shape[1])
                a[i] = (torch.rand(a.shape[1:], generator=gen) * 2 - 1) * bound
                b[i] = 0.0
