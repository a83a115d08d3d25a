"""A small decoder-only transformer (1-2 layers) that classifies a token
sequence from its last position, as in the modular-arithmetic grokking
papers, or, for a sequence task (a language model), predicts the next token
at every position. Pre-layernorm when `layernorm` is on; learned positions."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from pydantic import Field, field_validator
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

    @field_validator("heads")
    @classmethod
    def _heads_divide(cls, heads, info):
        d_model = info.data.get("d_model")
        if d_model is not None and d_model % heads:
            raise ValueError(f"must divide d_model ({d_model})")
        return heads

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
        # separate projections: the final block queries from the last position only, and
        # splitting one fused output costs a concatenation of its gradients in backward
        self.query = layers.Linear(members, d, d, bias=False)
        self.key = layers.Linear(members, d, d, bias=False)
        self.value = layers.Linear(members, d, d, bias=False)
        self.proj = layers.Linear(members, d, d, bias=False)
        self.fc_in = layers.Linear(members, d, spec.d_mlp)
        self.fc_out = layers.Linear(members, spec.d_mlp, d)
        self.act = layers.ACTIVATIONS[spec.activation]

    def forward(self, x: torch.Tensor, index: int, capture: Capture | None, last_only: bool = False) -> torch.Tensor:
        """x [S, B, T, D] -> [S, B, T, D]; with `last_only`, only the last position's
        output [S, B, 1, D]: what reaches the readout from the final block."""
        S, B, T, D = x.shape
        h = self.ln_attn(x) if self.ln_attn is not None else x
        heads = (self.heads, D // self.heads)
        k, v = self.key(h).view(S, B, T, *heads), self.value(h).view(S, B, T, *heads)  # [S,B,T,H,dh]
        if last_only:
            x = x[:, :, -1:]
            mixed = attend_last(self.query(h[:, :, -1]).view(S, B, *heads), k, v).unsqueeze(2)
        else:
            mixed = attend_causal(self.query(h).view(S, B, T, *heads), k, v, capture, f"attn.{index}")
        mixed = mixed.reshape(S, B, -1, D)
        x = x + self.proj(mixed)
        h = self.ln_mlp(x) if self.ln_mlp is not None else x
        hidden = self.act(self.fc_in(h))
        if capture is not None:
            capture(f"mlp.{index}", hidden)
        x = x + self.fc_out(hidden)
        if capture is not None:
            capture(f"resid.{index}", x)
        return x


def attend_causal(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, capture: Capture | None, site: str):
    """Causal attention of every position, q, k, v [S, B, T, H, dh] -> [S, B, T, H, dh];
    records the pattern [S, B, H, T, T] at `site`. Explicit batched matmuls: at these
    sizes (T <= 32, head width 16) they ran 1.2-2x faster, forward and backward,
    than the fused scaled_dot_product_attention."""
    q, k, v = (t.transpose(2, 3) for t in (q, k, v))  # [S,B,H,T,dh]
    T = q.shape[-2]
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    causal = torch.ones(T, T, dtype=torch.bool, device=q.device).triu(1)
    pattern = scores.masked_fill(causal, float("-inf")).softmax(-1)
    if capture is not None:
        capture(site, pattern)
    return (pattern @ v).transpose(2, 3)


def attend_last(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Attention of the last position alone (it sees every position), q [S, B, H, dh],
    k, v [S, B, T, H, dh] -> [S, B, H, dh]. Elementwise products over the T keys, in the
    projection's own layout: no transposes to copy, 2x faster than matmuls at T = 3."""
    scores = (q.unsqueeze(2) * k).sum(-1) / math.sqrt(q.shape[-1])  # [S,B,T,H]
    return (scores.softmax(2).unsqueeze(-1) * v).sum(2)


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
        self.sequence = info.sequence

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
            # Classifying a sequence, the readout sees only the last position, so the final
            # block computes only that position's query and MLP (a third of the work at 3
            # tokens) unless a site of it is captured whole.
            final = i == self.n_layers - 1 and not self.sequence
            captured = capture is not None and any(f"{kind}.{i}" in capture.wanted for kind in ("attn", "mlp", "resid"))
            h = block(h, i, capture, last_only=final and not captured)
        read = h if self.sequence else h[:, :, -1]  # a sequence task reads every position
        if self.ln_final is not None:
            read = self.ln_final(read)
        return self.output(read, capture)
