"""Layers whose parameters carry a leading seed axis of size S.

A seed ensemble is an ordinary module built from these: one batched matmul
serves all seeds, so S seeds cost little more than one where per-op overhead
dominates. Each parameter records how to initialize one seed's slice, and
`initialize` fills slice i from the generator of seeds[i] alone, so seed k's
initialization never depends on which other seeds share the ensemble.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from learnscope.seeding import generator

Init = Callable[[tuple[int, ...], torch.Generator], torch.Tensor]


def uniform_init(bound: float) -> Init:
    return lambda shape, gen: (torch.rand(shape, generator=gen) * 2 - 1) * bound


def normal_init(std: float) -> Init:
    return lambda shape, gen: torch.randn(shape, generator=gen) * std


def constant_init(value: float) -> Init:
    return lambda shape, gen: torch.full(shape, float(value))


class StackedModule(nn.Module):
    def __init__(self, members: int):
        super().__init__()
        self.members = members
        self._inits: dict[str, tuple[tuple[int, ...], Init]] = {}

    def stacked_parameter(self, name: str, shape: tuple[int, ...], init: Init) -> nn.Parameter:
        param = nn.Parameter(torch.empty(self.members, *shape))
        self.register_parameter(name, param)
        self._inits[name] = (shape, init)
        return param


def initialize(model: nn.Module, seeds: Sequence[int]) -> None:
    """Fill every stacked parameter, seed by seed, in module order."""
    if any(p.is_meta for p in model.parameters()):
        return  # shapes only (the memory estimate counts them): there is nothing to fill
    with torch.no_grad():
        for i, seed in enumerate(seeds):
            gen = generator(seed, "init")
            for module in model.modules():
                if isinstance(module, StackedModule):
                    for name, (shape, init) in module._inits.items():
                        getattr(module, name)[i] = init(shape, gen)


class Linear(StackedModule):
    """y = x W + b per seed; W is [S, in, out]. PyTorch's default init."""

    def __init__(self, members: int, d_in: int, d_out: int, bias: bool = True, weight_init: Init | None = None):
        super().__init__(members)
        bound = 1 / math.sqrt(d_in)
        self.weight = self.stacked_parameter("weight", (d_in, d_out), weight_init or uniform_init(bound))
        self.bias = self.stacked_parameter("bias", (1, d_out), uniform_init(bound)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        flat = x.reshape(shape[0], -1, shape[-1])
        out = torch.baddbmm(self.bias, flat, self.weight) if self.bias is not None else torch.bmm(flat, self.weight)
        return out.reshape(*shape[:-1], out.shape[-1])


class Embedding(StackedModule):
    """Token lookup per seed; tokens are offset into one flat table so a
    single embedding call (and its efficient backward) serves all seeds."""

    def __init__(self, members: int, vocab: int, dim: int, std: float = 1.0):
        super().__init__(members)
        self.vocab = vocab
        self.weight = self.stacked_parameter("weight", (vocab, dim), normal_init(std))
        self.register_buffer("_offsets", torch.arange(members) * vocab, persistent=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        # relative to this call's table: a pass over a group of members sees only their slices
        offsets = self._offsets[: self.weight.shape[0]].view(-1, *([1] * (tokens.dim() - 1)))
        return F.embedding(tokens + offsets, self.weight.view(-1, self.weight.shape[-1]))


class LayerNorm(StackedModule):
    def __init__(self, members: int, dim: int, eps: float = 1e-5):
        super().__init__(members)
        self.eps = eps
        self.weight = self.stacked_parameter("weight", (dim,), constant_init(1.0))
        self.bias = self.stacked_parameter("bias", (dim,), constant_init(0.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        view = (x.shape[0],) + (1,) * (x.dim() - 2) + (x.shape[-1],)
        return torch.addcmul(self.bias.view(view), F.layer_norm(x, x.shape[-1:], eps=self.eps), self.weight.view(view))


ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": torch.relu,
    "gelu": F.gelu,
    "tanh": torch.tanh,
    "silu": F.silu,
    "quadratic": torch.square,
}
