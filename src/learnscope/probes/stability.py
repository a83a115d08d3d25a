"""Probes of the training instabilities of Wortsman et al., "Small-scale
proxies for large-scale Transformer training instabilities": attention
logit growth (the attention logits q.k / sqrt(d_head) grow large and the
attention's entropy collapses) and output-logit divergence (the
softmax normalizer Z of the output logits drifts from 1, what z-loss,
coefficient * log^2 Z, holds back).

- `attention_logits` reads the transformer's `q.{l}` and `k.{l}` sites
  [S, B, T, H, dh] (after qk-layernorm, when the model has it) on the first
  `max_examples` examples of a split, and reports per layer
  `attention_logits/max.{l}`, the largest |q_i . k_j| / sqrt(dh) over heads,
  examples and the (query i, key j) pairs the causal mask keeps (j <= i);
  `attention_logits/max` is the largest over layers.
- `attention_entropy` reads the patterns `attn.{l}` [S, B, H, T, T] and
  reports per layer `attention_entropy/mean.{l}`, the entropy in nats of
  each query row's attention, -sum_j A[i, j] ln A[i, j] (0 ln 0 = 0),
  averaged over heads, query positions and examples;
  `attention_entropy/min` is the least over layers, and
  `attention_entropy/uniform` the same mean for even causal attention
  (query i spreads 1/(i+1) over its keys: ln(i+1)), the level it starts near.
- `output_log_z` reads the model's outputs on a split: log Z =
  logsumexp of an output's logits (over the classes a task's class group
  allows, as the loss does), averaged over an example's scored positions
  (every position of a language model, but those a task leaves unscored)
  and then over the examples: `output_log_z/mean`; `output_log_z/squared`
  is the same mean of log^2 Z, the quantity z-loss adds.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from pydantic import Field, PrivateAttr

from learnscope import registry
from learnscope.errors import LearnscopeError, SpecError
from learnscope.losses import IGNORE
from learnscope.probes.base import Needs, Probe, ProbeContext, check_splits, check_tensors, needs_classification
from learnscope.tasks.base import TaskInfo


def max_attention_logits(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """The largest |q_i . k_j| / sqrt(dh) per seed over examples, heads and the
    causal pairs j <= i; q, k [S, N, T, H, dh]. Float64, [S]."""
    check_tensors("max_attention_logits", {"q": (q, "[S, N, T, H, D]", "floating"),
                                           "k": (k, "[S, N, T, H, D]", "floating")})
    S, N, T = q.shape[:3]
    if N == 0 or T == 0:
        raise LearnscopeError(f"max_attention_logits: queries hold no positions (shape {tuple(q.shape)})")
    q, k = q.double().transpose(2, 3), k.double().transpose(2, 3)  # [S, N, H, T, dh]
    scores = (q @ k.transpose(-1, -2)).abs() / math.sqrt(q.shape[-1])
    future = torch.ones(T, T, dtype=torch.bool, device=q.device).triu(1)
    return scores.masked_fill(future, 0.0).reshape(S, -1).amax(1)


def attention_entropy(pattern: torch.Tensor) -> torch.Tensor:
    """The entropy in nats of each query row of attention patterns [S, N, H, T, T]
    (rows summing to 1), averaged over examples, heads and queries. Float64, [S]."""
    check_tensors("attention_entropy", {"pattern": (pattern, "[S, N, H, T, T]", "floating")})
    if pattern.shape[1] == 0 or pattern.shape[-1] == 0:
        raise LearnscopeError(f"attention_entropy: the patterns hold no rows (shape {tuple(pattern.shape)})")
    p = pattern.double()
    terms = torch.where(p > 0, p * p.clamp(min=torch.finfo(p.dtype).tiny).log(), torch.zeros_like(p))
    return -terms.sum(-1).reshape(p.shape[0], -1).mean(1)


def uniform_entropy(positions: int) -> float:
    """The mean entropy of even causal attention over `positions` query rows: mean of ln(i + 1)."""
    return math.fsum(math.log(i + 1) for i in range(positions)) / positions


def log_z(info: TaskInfo, outputs: torch.Tensor, targets: torch.Tensor, power: int = 1) -> torch.Tensor:
    """(log Z)^power per example [S, B]: log Z = logsumexp of the output logits
    (those of the target's class group, when the task has groups), averaged
    over the example's scored positions for a sequence task. The dtype of
    `outputs`, differentiable (z-loss takes its gradient)."""
    logits = info.restrict_outputs(outputs, targets) if info.class_groups is not None else outputs
    values = torch.logsumexp(logits, -1) ** power  # [S, B] or [S, B, T]
    if not info.sequence:
        return values
    scored = targets != IGNORE
    return (values * scored).sum(-1) / scored.sum(-1).clamp(min=1)


def attention_layers(sites: list[str], kinds: tuple[str, ...], probe: str, path: str) -> int:
    """How many layers have every site kind.l in `kinds` (l = 0, 1, ...)."""
    names = set(sites)
    layers = 0
    while all(f"{kind}.{layers}" in names for kind in kinds):
        layers += 1
    if not layers:
        wanted = ", ".join(f"{kind}.0" for kind in kinds)
        raise SpecError(path, f"{probe} reads attention sites ({wanted}, ...); this model has none (the transformer "
                        "has them)")
    return layers


class _AttentionProbe(Probe):
    split: str = Field("test", description="the split whose examples are read")
    max_examples: int = Field(64, ge=1, description="examples of the split read (the first ones)")
    _layers: int | None = PrivateAttr(None)  # from the model at check
    _positions: int = PrivateAttr(0)
    kinds: ClassVar[tuple[str, ...]] = ()  # the site kinds read per layer

    def check(self, info: TaskInfo, model, path: str) -> None:
        check_splits([self.split], info, f"{path}.split")
        self._layers = attention_layers(model.site_names(), type(self).kinds, self.registry_name, path)
        self._positions = info.input_shape[0]

    def layers(self) -> int:
        if self._layers is None:
            raise LearnscopeError(f"{self.registry_name}: metric names come from the model's layers, known once the "
                                  "probe is checked against the model (Trainer does)")
        return self._layers

    def needs(self, info: TaskInfo) -> Needs:
        return Needs(sites={self.split: {f"{kind}.{i}" for i in range(self.layers()) for kind in type(self).kinds}},
                     site_examples={self.split: self.max_examples})


@registry.probes.register("attention_logits")
class AttentionLogits(_AttentionProbe):
    """Per layer, the largest attention logit |q.k| / sqrt(d_head) before the
    softmax, over heads, causal positions and a split's first examples."""

    kinds: ClassVar[tuple[str, ...]] = ("q", "k")

    def metric_names(self, info: TaskInfo) -> list[str]:
        return [*(f"attention_logits/max.{i}" for i in range(self.layers())), "attention_logits/max"]

    def measure(self, ctx: ProbeContext) -> dict[str, torch.Tensor]:
        per_layer = [max_attention_logits(ctx.activations(self.split, f"q.{i}", self.max_examples),
                                          ctx.activations(self.split, f"k.{i}", self.max_examples))
                     for i in range(self.layers())]
        metrics = {f"attention_logits/max.{i}": value for i, value in enumerate(per_layer)}
        metrics["attention_logits/max"] = torch.stack(per_layer, 1).amax(1)
        return metrics


@registry.probes.register("attention_entropy")
class AttentionEntropy(_AttentionProbe):
    """Per layer, the mean entropy (nats) of the attention pattern's query rows
    over heads, positions and a split's first examples; the least over layers,
    and the level of even causal attention."""

    kinds: ClassVar[tuple[str, ...]] = ("attn",)

    def metric_names(self, info: TaskInfo) -> list[str]:
        return [*(f"attention_entropy/mean.{i}" for i in range(self.layers())), "attention_entropy/min",
                "attention_entropy/uniform"]

    def measure(self, ctx: ProbeContext) -> dict[str, torch.Tensor]:
        per_layer = [attention_entropy(ctx.activations(self.split, f"attn.{i}", self.max_examples))
                     for i in range(self.layers())]
        metrics = {f"attention_entropy/mean.{i}": value for i, value in enumerate(per_layer)}
        metrics["attention_entropy/min"] = torch.stack(per_layer, 1).amin(1)
        metrics["attention_entropy/uniform"] = torch.full_like(per_layer[0], uniform_entropy(self._positions))
        return metrics


@registry.probes.register("output_log_z")
class OutputLogZ(Probe):
    """The mean over a split's examples (and scored positions) of log Z, the
    log of the output softmax's normalizer, and of log^2 Z (what z-loss adds)."""

    split: str = Field("test", description="the split whose examples are read")
    max_examples: int | None = Field(None, ge=1, description="examples of the split read (the first ones); "
                                     "None: all")

    def check(self, info: TaskInfo, model, path: str) -> None:
        check_splits([self.split], info, f"{path}.split")
        needs_classification(info, path, "output_log_z")

    def needs(self, info: TaskInfo) -> Needs:
        return Needs(outputs={self.split: self.max_examples})

    def metric_names(self, info: TaskInfo) -> list[str]:
        return ["output_log_z/mean", "output_log_z/squared"]

    def measure(self, ctx: ProbeContext) -> dict[str, torch.Tensor]:
        outputs = ctx.outputs(self.split, self.max_examples).double()
        targets = ctx.targets(self.split)[:, : outputs.shape[1]]
        return {"output_log_z/mean": log_z(ctx.info, outputs, targets).mean(1),
                "output_log_z/squared": log_z(ctx.info, outputs, targets, power=2).mean(1)}
