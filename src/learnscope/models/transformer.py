"""A small decoder-only transformer (1-8 layers) that classifies a token
sequence from one query position (the last by default), as in the
modular-arithmetic grokking papers, or, for a sequence task (a language
model), predicts the next token at every position. A task of vector inputs
[T, F] (one feature vector per position, e.g. bursty-icl's items and one-hot
labels) is read through a linear embedding `embed` (F -> d_model, no bias)
in place of the token table; everything downstream, sites included, is the
same. Pre-layernorm when
`layernorm` is on; learned positions; attention-only blocks (no MLP) and
layernorm of queries and keys per head as options.

Sites per layer i, in the order a forward pass reaches them: `resid_pre.i`
(the residual stream entering the block), `q.i`, `k.i`, `v.i` [S, B, T, H, dh]
(after `qk_layernorm`), `attn.i` (the pattern [S, B, H, T, T]), `head_out.i`
[S, B, T, H, dh] (each head's weighted sum of values, before the output
projection: an edit of one head changes that head's contribution alone),
`mlp.i` (the hidden units; not with `attn_only`) and `resid.i` (the stream
leaving the block)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from pydantic import Field, field_validator
from torch import nn

from learnscope import registry
from learnscope.errors import SpecError
from learnscope.models import layers
from learnscope.models.base import EnsembleModel, Model, Sites
from learnscope.tasks.base import TaskInfo

# the sites of a block that hold every position only when computed in full: the
# final block of a classifier computes its query position alone unless one is touched
FULL_POSITION_SITES = ("q", "attn", "head_out", "mlp", "resid")
# where the head axis lies in each head-shaped site (seed and batch axes first)
HEAD_AXES = {"q": 3, "k": 3, "v": 3, "head_out": 3, "attn": 2}


@registry.models.register("transformer")
class Transformer(Model):
    layers: int = Field(1, ge=1, le=8)
    d_model: int = Field(128, ge=1)
    heads: int = Field(4, ge=1)
    d_mlp: int = Field(512, ge=1)
    layernorm: bool = True
    positions: Literal["learned", "none"] = "learned"
    activation: Literal["relu", "gelu"] = "relu"
    output_scale: float = Field(1.0, gt=0)
    attn_only: bool = Field(False, description="blocks of attention alone, no MLP")
    qk_layernorm: bool = Field(False, description="layernorm of each head's queries and keys before the scores")
    query_position: int = Field(-1, description="the position a classifier reads (negative: from the end)")

    @field_validator("heads")
    @classmethod
    def _heads_divide(cls, heads, info):
        d_model = info.data.get("d_model")
        if d_model is not None and d_model % heads:
            raise ValueError(f"must divide d_model ({d_model})")
        return heads

    def build(self, info: TaskInfo, seeds: Sequence[int]) -> EnsembleModel:
        if info.input_kind != "tokens" and len(info.input_shape) != 2:
            raise SpecError("model.name", "'transformer' reads a sequence: token inputs, or vector inputs of shape "
                            f"(positions, features); this task's inputs are vectors of shape {info.input_shape}")
        length = info.input_shape[0]
        if info.sequence and self.query_position != -1:
            raise SpecError("model.query_position", "applies to classification; a sequence task is read at every "
                            "position")
        if not -length <= self.query_position < length:
            raise SpecError("model.query_position", f"{self.query_position} is outside the task's {length} positions "
                            f"(valid: {-length} to {length - 1})")
        net = TransformerNetwork(self, info, len(seeds))
        layers.initialize(net, seeds)
        return net


class Block(nn.Module):
    def __init__(self, spec: Transformer, members: int):
        super().__init__()
        d = spec.d_model
        self.heads = spec.heads
        mlp = not spec.attn_only
        self.ln_attn = layers.LayerNorm(members, d) if spec.layernorm else None
        self.ln_mlp = layers.LayerNorm(members, d) if spec.layernorm and mlp else None
        # separate projections: the final block queries from one position only, and
        # splitting one fused output costs a concatenation of its gradients in backward
        self.query = layers.Linear(members, d, d, bias=False)
        self.key = layers.Linear(members, d, d, bias=False)
        self.value = layers.Linear(members, d, d, bias=False)
        self.proj = layers.Linear(members, d, d, bias=False)
        self.fc_in = layers.Linear(members, d, spec.d_mlp) if mlp else None
        self.fc_out = layers.Linear(members, spec.d_mlp, d) if mlp else None
        self.act = layers.ACTIVATIONS[spec.activation]
        # created last: the modules above keep the order (and so the initialization) they had
        head_width = d // spec.heads
        self.ln_q = layers.LayerNorm(members, head_width) if spec.qk_layernorm else None
        self.ln_k = layers.LayerNorm(members, head_width) if spec.qk_layernorm else None

    def forward(self, x: torch.Tensor, index: int, sites: Sites | None, query: int | None = None) -> torch.Tensor:
        """x [S, B, T, D] -> [S, B, T, D]; with `query` (a position), only that position's
        output [S, B, 1, D]: what reaches the readout from a classifier's final block."""
        S, B, T, D = x.shape
        if sites is not None:
            x = sites(f"resid_pre.{index}", x)
        h = self.ln_attn(x) if self.ln_attn is not None else x
        heads = (self.heads, D // self.heads)
        k, v = self.key(h).view(S, B, T, *heads), self.value(h).view(S, B, T, *heads)  # [S,B,T,H,dh]
        if self.ln_k is not None:
            k = self.ln_k(k)
        if sites is not None:
            k, v = sites(f"k.{index}", k), sites(f"v.{index}", v)
        if query is not None:
            seen = query + 1  # causal: the query position sees the keys up to its own
            x = x[:, :, query:seen]
            q = self.query(h[:, :, query]).view(S, B, *heads)
            if self.ln_q is not None:
                q = self.ln_q(q)
            if seen < T:
                k, v = k[:, :, :seen], v[:, :, :seen]
            mixed = attend_last(q, k, v).unsqueeze(2)
        else:
            q = self.query(h).view(S, B, T, *heads)
            if self.ln_q is not None:
                q = self.ln_q(q)
            if sites is not None:
                q = sites(f"q.{index}", q)
            mixed = attend_causal(q, k, v, sites, f"attn.{index}")
            if sites is not None:
                mixed = sites(f"head_out.{index}", mixed)
        mixed = mixed.reshape(S, B, -1, D)
        x = x + self.proj(mixed)
        if self.fc_in is not None and self.fc_out is not None:
            h = self.ln_mlp(x) if self.ln_mlp is not None else x
            hidden = self.act(self.fc_in(h))
            if sites is not None:
                hidden = sites(f"mlp.{index}", hidden)
            x = x + self.fc_out(hidden)
        if sites is not None:
            x = sites(f"resid.{index}", x)
        return x


def attend_causal(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, sites: Sites | None, site: str):
    """Causal attention of every position, q, k, v [S, B, T, H, dh] -> [S, B, T, H, dh];
    the pattern [S, B, H, T, T] passes through `site`. Explicit batched matmuls: at these
    sizes (T <= 32, head width 16) they ran 1.2-2x faster, forward and backward,
    than the fused scaled_dot_product_attention."""
    q, k, v = (t.transpose(2, 3) for t in (q, k, v))  # [S,B,H,T,dh]
    T = q.shape[-2]
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    causal = torch.ones(T, T, dtype=torch.bool, device=q.device).triu(1)
    pattern = scores.masked_fill(causal, float("-inf")).softmax(-1)
    if sites is not None:
        pattern = sites(site, pattern)
    return (pattern @ v).transpose(2, 3)


def attend_last(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Attention of one position that sees every key given, q [S, B, H, dh],
    k, v [S, B, T, H, dh] -> [S, B, H, dh]. Elementwise products over the T keys, in the
    projection's own layout: no transposes to copy, 2x faster than matmuls at T = 3."""
    scores = (q.unsqueeze(2) * k).sum(-1) / math.sqrt(q.shape[-1])  # [S,B,T,H]
    return (scores.softmax(2).unsqueeze(-1) * v).sum(2)


class TransformerNetwork(EnsembleModel):
    def __init__(self, spec: Transformer, info: TaskInfo, members: int):
        super().__init__()
        self.members = members
        self.n_layers = spec.layers
        self.attn_only = spec.attn_only
        d = spec.d_model
        self.embed: nn.Module
        if info.input_kind == "tokens":
            self.embed = layers.Embedding(members, info.vocab_size, d, std=1 / math.sqrt(d))
        else:  # a feature vector per position: a linear embedding (one-hot features pick rows, as tokens do)
            self.embed = layers.Linear(members, info.input_shape[1], d, bias=False)
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
        self.query_position = spec.query_position % info.input_shape[0]  # from the start

    def site_names(self) -> list[str]:
        kinds = ["resid_pre", "q", "k", "v", "attn", "head_out", *([] if self.attn_only else ["mlp"]), "resid"]
        return ["embed", *(f"{kind}.{i}" for i in range(self.n_layers) for kind in kinds), "penultimate", "logits"]

    def head_axis(self, site: str) -> int | None:
        kind, _, layer = site.partition(".")
        return HEAD_AXES.get(kind) if layer else None

    def forward(self, x: torch.Tensor, sites: Sites | None = None) -> torch.Tensor:
        h = self.embed(x)
        if self.pos is not None:
            h = h + self.pos.weight.unsqueeze(1)
        if sites is not None:
            h = sites("embed", h)
        query_only = False
        for i, block in enumerate(self.blocks):
            # Classifying a sequence, the readout sees only the query position, so the final
            # block computes only that position's query and MLP (a third of the work at 3
            # tokens) unless a site of it that holds every position is read or edited.
            final = i == self.n_layers - 1 and not self.sequence
            touched = sites is not None and any(sites.touches(f"{kind}.{i}") for kind in FULL_POSITION_SITES)
            query_only = final and not touched
            h = block(h, i, sites, query=self.query_position if query_only else None)
        # a sequence task reads every position; a classifier its query position
        read = h if self.sequence else h[:, :, -1 if query_only else self.query_position]
        if self.ln_final is not None:
            read = self.ln_final(read)
        return self.output(read, sites)
