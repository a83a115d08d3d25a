"""Multilayer perceptron, with a token embedding for discrete inputs and an
output scale alpha (large alpha: lazy, kernel-like training; small: rich).

`mirror_init` makes the network output exactly zero at initialization by
pairing each last-layer hidden unit with a copy whose readout weight is
negated. The lazy-training literature uses this so that a large alpha does
not start from huge outputs; the tangent kernel stays full rank.

`hidden: []` is the head alone on the input (with `bias: false`, x ↦ Wx: a
linear model); its `penultimate` site is then the input itself.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from pydantic import Field, field_validator

from learnscope import registry
from learnscope.errors import SpecError
from learnscope.models import layers
from learnscope.models.base import EnsembleModel, Model, Sites
from learnscope.tasks.base import TaskInfo


@registry.models.register("mlp")
class MLP(Model):
    hidden: list[int] = Field([512], description="hidden widths; [] is the head alone on the input: a linear model")
    activation: Literal["relu", "gelu", "tanh", "silu", "quadratic"] = "relu"
    embed: int = Field(128, ge=1, description="token embedding width (token inputs only)")
    token_input: Literal["embedding", "one_hot"] = Field(
        "embedding", description="token inputs: a learned embedding of `embed` per token, or each token's one-hot "
        "vector, concatenated (the modular-arithmetic MLPs of Gromov, Doshi et al.)")
    init_std: float | None = Field(None, gt=0, description="every weight matrix drawn N(0, init_std^2); None: "
                                   "PyTorch's default, uniform in ±1/sqrt(fan_in) (biases keep it)")
    output_scale: float = Field(1.0, gt=0, description="alpha: the output is multiplied by it")
    mirror_init: bool = False
    bias: bool = True

    @field_validator("hidden")
    @classmethod
    def _widths_positive(cls, hidden):
        if any(w < 1 for w in hidden):
            raise ValueError("every hidden width must be at least 1")
        return hidden

    @field_validator("mirror_init")
    @classmethod
    def _mirror_needs_even_width(cls, mirror_init, info):
        hidden = info.data.get("hidden")
        if mirror_init and hidden == []:
            raise ValueError("mirror_init pairs the last hidden layer's units; hidden is [] (a linear model)")
        if mirror_init and hidden and hidden[-1] % 2:
            raise ValueError(f"mirror_init needs an even last hidden width; hidden ends in {hidden[-1]}")
        return mirror_init

    def build(self, info: TaskInfo, seeds: Sequence[int]) -> EnsembleModel:
        if info.sequence:
            raise SpecError("model.name", "'mlp' reads a whole sequence at once; a sequence task (next token at "
                            "every position) needs 'transformer'")
        net = MLPNetwork(self, info, len(seeds))
        layers.initialize(net, seeds)
        if self.mirror_init:
            net.mirror()
        return net


class MLPNetwork(EnsembleModel):
    def __init__(self, spec: MLP, info: TaskInfo, members: int):
        super().__init__()
        self.members = members
        self.spec = spec
        self.one_hot_vocab = None
        if info.input_kind == "tokens" and spec.token_input == "one_hot":
            self.embedding = None
            self.one_hot_vocab = info.vocab_size
            d_in = info.vocab_size * info.input_shape[0]
        elif info.input_kind == "tokens":
            self.embedding = layers.Embedding(members, info.vocab_size, spec.embed)
            d_in = spec.embed * info.input_shape[0]
        else:
            self.embedding = None
            d_in = math.prod(info.input_shape)  # vectors per position ([T, F]) are read flattened
        widths = [d_in, *spec.hidden]
        init = layers.normal_init(spec.init_std) if spec.init_std is not None else None
        self.hidden = torch.nn.ModuleList(
            layers.Linear(members, a, b, bias=spec.bias, weight_init=init) for a, b in zip(widths[:-1], widths[1:])
        )
        self.head = layers.Linear(members, widths[-1], info.output_dim, bias=spec.bias, weight_init=init)
        self.act = layers.ACTIVATIONS[spec.activation]
        self.scale = spec.output_scale

    def site_names(self) -> list[str]:
        return ["embed", *(f"hidden.{i}" for i in range(len(self.hidden))), "penultimate", "logits"]

    def forward(self, x: torch.Tensor, sites: Sites | None = None) -> torch.Tensor:
        if self.one_hot_vocab is not None:
            h = torch.nn.functional.one_hot(x, self.one_hot_vocab).flatten(-2).to(self.head.weight.dtype)
        else:
            h = self.embedding(x).flatten(-2) if self.embedding is not None else x.flatten(2)
        if sites is not None:
            h = sites("embed", h)
        for i, layer in enumerate(self.hidden):
            h = self.act(layer(h))
            if sites is not None:
                h = sites(f"hidden.{i}", h)
        return self.output(h, sites)

    @torch.no_grad()
    def mirror(self) -> None:
        last, out = self.hidden[-1], self.head
        half = last.weight.shape[-1] // 2
        last.weight[..., half:] = last.weight[..., :half]
        if last.bias is not None:
            last.bias[..., half:] = last.bias[..., :half]
        out.weight[:, half:, :] = -out.weight[:, :half, :]
        if out.bias is not None:
            out.bias.zero_()
