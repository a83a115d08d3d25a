"""A small decoder-only transformer (1-2 layers) that classifies a token
sequence from its last position, as in the modular-arithmetic grokking
papers. Pre-layernorm when `layernorm` is on; learned positions."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from learnscope import registry
from learnscope.models import layers
from learnscope.models.base import Capture, EnsembleModel, Model
from learnscope.models.mlp import require_tokens
from learnscope.tasks.base import TaskInfo


@registry.models.register("transformer")
class Transformer(Model):
    layers: int = Field(1, ge=1, le=2)
    d_model: int = Field(128, ge=1)
    heads: int = Field(4, ge=1)
    d_mlp: int = Field(512, ge=1)
    layernorm: bool = True
    positions: Literal["learned", "none"] = "learned"
    activation: Literal["relu", "gelu"] = "relu"
    output_scale: float = Field(1.0, gt=0)

    @model_validator(mode="after")
    def _heads_divide(self):
        if self.d_model % self.heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by heads ({self.heads})")
        return self

    def build(self, info: TaskInfo, seeds: Sequence[int]) -> EnsembleModel:
        require_tokens(info, "transformer")
        net = TransformerNetwork(self, info, len(seeds))
        layers.initialize(net, seeds)
        return net


class Block(nn.Module):
    def __init__(self, spec: Transformer, members: int):
        super().__init__()
        d = spec.d_model
        self.heads = spec.heads
        self.ln_attn = layers.LayerNorm(members, d) if spec.layernorm else None
        self.ln_mlp = layers.LayerNorm(members, d) if spec.layernorm else None
        self.qkv = layers.Linear(members, d, 3 * d, bias=False)
        self.proj = layers.Linear(members, d, d, bias=False)
        self.fc_in = layers.Linear(members, d, spec.d_mlp)
        self.fc_out = layers.Linear(members, spec.d_mlp, d)
        self.act = layers.ACTIVATIONS[spec.activation]

    def forward(self, x: torch.Tensor, index: int, capture: Capture | None) -> torch.Tensor:
        S, B, T, D = x.shape
        H = self.heads
        h = self.ln_attn(x) if self.ln_attn is not None else x
        q, k, v = self.qkv(h).view(S, B, T, 3, H, D // H).permute(3, 0, 1, 4, 2, 5).unbind(0)  # [S,B,H,T,dh]
        site = f"attn.{index}"
        if capture is not None and site in capture.wanted:  # the pattern itself is asked for
            scores = (q @ k.transpose(-1, -2)) / math.sqrt(D // H)
            causal = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)
            pattern = scores.masked_fill(causal, float("-inf")).softmax(-1)
            capture(site, pattern)
            mixed = pattern @ v
        else:  # the fused kernel: a batched matmul over S*B*H tiny matrices is many times slower
            mixed = F.scaled_dot_product_attention(
                q.reshape(S * B, H, T, -1), k.reshape(S * B, H, T, -1), v.reshape(S * B, H, T, -1), is_causal=True
            ).view(S, B, H, T, -1)
        mixed = mixed.transpose(2, 3).reshape(S, B, T, D)
        x = x + self.proj(mixed)
        h = self.ln_mlp(x) if self.ln_mlp is not None else x
        hidden = self.act(self.fc_in(h))
        if capture is not None:
            capture(f"mlp.{index}", hidden)
        x = x + self.fc_out(hidden)
        if capture is not None:
            capture(f"resid.{index}", x)
        return x


class TransformerNetwork(EnsembleModel):
    def __init__(self, spec: Transformer, info: TaskInfo, members: int):
        super().__init__()
        self.members = members
        self.n_layers = spec.layers
        d = spec.d_model
        self.embed = layers.Embedding(members, info.vocab_size, d, std=1 / math.sqrt(d))
        self.pos = (
            layers.StackedModule(members) if spec.positions == "learned" else None
        )
        if self.pos is not None:
            self.pos.stacked_parameter("weight", (info.input_shape[0], d), layers.normal_init(1 / math.sqrt(d)))
        self.blocks = nn.ModuleList(Block(spec, members) for _ in range(spec.layers))
        self.ln_final = layers.LayerNorm(members, d) if spec.layernorm else None
        self.head = layers.Linear(members, d, info.output_dim, bias=False)  # the unembedding
        self.scale = spec.output_scale

    def site_names(self) -> list[str]:
        per_layer = [f"{kind}.{i}" for i in range(self.n_layers) for kind in ("attn", "mlp", "resid")]
        return ["embed", *per_layer, "penultimate", "logits"]

    def forward(self, x: torch.Tensor, capture: Capture | None = None) -> torch.Tensor:
        h = self.embed(x)
        if self.pos is not None:
            h = h + self.pos.weight.unsqueeze(1)
        if capture is not None:
            capture("embed", h)
        for i, block in enumerate(self.blocks):
            h = block(h, i, capture)
        last = h[:, :, -1]
        if self.ln_final is not None:
            last = self.ln_final(last)
        return self.output(last, capture)
