"""Circuits of tiny transformers, read off their attention patterns and
per-position losses: induction and previous-token scores per layer and
head, the attention-sink rate, and the in-context score.

The attention probes read the model's `attn.{layer}` sites, the pattern
[S, B, H, T, T] (query rows, key columns, rows summing to 1), on the first
`max_examples` examples of a split. Their per-head metrics are named
`NAME/L{layer}H{head}`, beside `NAME/max`, the best head of each seed.

- Head scores follow TransformerLens's head detector (`detect_head`, error
  measure "mul"): a 0/1 detection pattern P over (query, key), and per
  example and head sum(A * P) / sum(A); the probe reports the mean over
  examples. The induction pattern is the duplicate-token pattern (key j an
  earlier occurrence of the query's token, j < i) shifted one key to the
  right: the query attends to the token after an earlier copy of itself.
  The previous-token pattern is key i - 1 for query i. With `queries: all`
  (the reference's definition) every query row counts in the denominator,
  so a perfect induction head on `<bos>` r r scores the share of rows that
  have an earlier copy (T - 1 of 2T for repeated-tokens: about 1/2);
  `queries: matched` keeps only the rows where the pattern has a 1, and a
  perfect head scores 1. `exclude_first` and `exclude_current` zero the
  attention to key 0 and to the query's own position first, as the
  reference's `exclude_bos` and `exclude_current_token`. `rows` keeps only
  some query positions (bursty-icl's query: `rows: [-1]`). `NAME/uniform`
  is the score even causal attention gets on the same examples: the level
  of a head that has not formed. The duplicate tokens are the positions'
  identities: the tokens, or what a task of vector sequences declares each
  position holds (bursty-icl: an item's class, a label).
- The attention sink of Gu et al., "When Attention Sink Emerges in Language
  Models: An Empirical View", as the authors' code computes it
  (sail-sg/Attention-Sink, `compute_attention_sink`): the importance of key
  k in one example's head is alpha_k = sum_{i >= k} A[i, k] / (T - k), the
  mean attention it receives from the queries at and after it (k from 0);
  Sink^eps is the share, over examples, layers and heads, of alpha_k > eps
  for the sink position k (the first, by default), eps = 0.3.
  `attention_sink/rate` is Sink^eps (a share, not a percentage),
  `attention_sink/mass` the mean alpha_k over examples, layers and heads.
- The in-context score of Olsson et al., "In-context Learning and Induction
  Heads": the loss at a late position minus the loss at an early one,
  averaged over the split's examples (negative when context helps).

Accuracy on a task's own splits (bursty-icl's `in_context`, `in_weights`)
is the `accuracy` probe with `splits`.
"""

from __future__ import annotations

from functools import partial
from typing import Literal

import torch
from pydantic import Field, PrivateAttr

from learnscope import registry
from learnscope.errors import LearnscopeError, SpecError
from learnscope.losses import example_accuracy, token_losses
from learnscope.models.base import EnsembleModel, selected
from learnscope.probes.base import Needs, Probe, ProbeContext, check_splits, check_tensors, needs_classification
from learnscope.tasks.base import TaskInfo

# ---------------------------------------------------------------- definitions


def duplicate_token_pattern(tokens: torch.Tensor) -> torch.Tensor:
    """[..., T, T] bool: key j holds the query i's token, j < i, for tokens [..., T]."""
    T = tokens.shape[-1]
    same = tokens.unsqueeze(-1) == tokens.unsqueeze(-2)
    return same & torch.ones(T, T, dtype=torch.bool, device=tokens.device).tril(-1)


def induction_pattern(tokens: torch.Tensor) -> torch.Tensor:
    """[..., T, T] bool: key j follows an earlier copy of the query's token
    (the duplicate-token pattern shifted one key right, key 0 never)."""
    duplicate = duplicate_token_pattern(tokens)
    shifted = torch.zeros_like(duplicate)
    shifted[..., 1:] = duplicate[..., :-1]
    T = tokens.shape[-1]
    return shifted & torch.ones(T, T, dtype=torch.bool, device=tokens.device).tril()


def previous_token_pattern(T: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """[T, T] bool: key i - 1 for query i."""
    return torch.ones(T, T, dtype=torch.bool, device=device).tril(-1).triu(-1)


def head_scores(attn: torch.Tensor, pattern: torch.Tensor, queries: Literal["all", "matched"] = "all",
                exclude_first: bool = False, exclude_current: bool = False) -> torch.Tensor:
    """[S, H]: per head, the mean over examples of sum(A * P) / sum(A), for
    attention patterns attn [S, B, H, Q, T] (Q query rows: all T, or some)
    and a detection pattern P [S, B, Q, T] (or [Q, T], the same for every
    example). `queries: matched` sums only over the query rows where P has a
    1 (examples with none left out); a head that has no example left scores
    NaN. `exclude_current` assumes row i is query position i (all rows)."""
    check_tensors("head_scores", {"attn": (attn, "[S, B, H, Q, T]", "floating")})
    a = attn.double()
    if exclude_first or exclude_current:
        a = a.clone()
        if exclude_first:
            a[..., 0] = 0
        if exclude_current:
            a.diagonal(dim1=-2, dim2=-1).zero_()
    p = pattern.to(a.dtype)
    if p.dim() == 2:
        p = p.expand(*a.shape[:2], *p.shape)
    p = p.unsqueeze(2)  # [S, B, 1, T, T]
    rows = torch.ones_like(p[..., :1]) if queries == "all" else p.amax(-1, keepdim=True)
    hit = (a * p).sum((-2, -1))  # [S, B, H]
    total = (a * rows).sum((-2, -1))
    counted = (rows.sum((-2, -1)) > 0).expand_as(hit)  # [S, B, H]: the example has a row to score
    score = torch.where(counted, hit / total.clamp(min=torch.finfo(a.dtype).tiny), 0.0)
    return score.sum(1) / counted.sum(1)  # NaN where no example counted


def sink_importance(attn: torch.Tensor) -> torch.Tensor:
    """[S, B, H, T]: alpha_k, the mean attention key k receives from the queries
    i >= k, of attention patterns attn [S, B, H, T, T] (causal)."""
    check_tensors("sink_importance", {"attn": (attn, "[S, B, H, T, T]", "floating")})
    T = attn.shape[-1]
    queries = torch.arange(T, 0, -1, dtype=torch.float64, device=attn.device)  # T - k queries see key k
    return attn.double().sum(-2) / queries


# ---------------------------------------------------------------- probes


def attention_layers(model: EnsembleModel, path: str, probe: str) -> int:
    layers = 0
    names = set(model.site_names())
    while f"attn.{layers}" in names:
        layers += 1
    if not layers:
        raise SpecError(path, f"{probe} reads attention patterns (sites attn.0, attn.1, ...); this model has "
                        "none (the transformer has them)")
    return layers


class _AttentionProbe(Probe):
    split: str = Field("test", description="the split whose examples are read")
    max_examples: int = Field(256, ge=1, description="examples of the split read (the first ones)")
    _shape: tuple[int, int] | None = PrivateAttr(None)  # (layers, heads), from the model at check

    def check(self, info: TaskInfo, model: EnsembleModel, path: str) -> None:
        check_splits([self.split], info, f"{path}.split")
        layers = attention_layers(model, path, self.registry_name)
        device = next(model.parameters()).device
        dtype = torch.long if info.input_kind == "tokens" else torch.float32
        shapes = model.site_shapes(torch.zeros((model.members, 1, *info.input_shape), dtype=dtype, device=device))
        self._shape = (layers, shapes["attn.0"][0])

    def shape(self) -> tuple[int, int]:
        if self._shape is None:
            raise LearnscopeError(f"{self.registry_name}: metric names come from the model's layers and heads, "
                                  "known once the probe is checked against the model (Trainer does)")
        return self._shape

    def needs(self, info: TaskInfo) -> Needs:
        layers = self.shape()[0]
        return Needs(sites={self.split: {f"attn.{i}" for i in range(layers)}},
                     site_examples={self.split: self.max_examples})

    def patterns(self, ctx: ProbeContext) -> list[torch.Tensor]:
        """Per layer, the attention patterns [S, m, H, T, T] of the split's first examples."""
        layers, heads = self.shape()
        T = ctx.info.input_shape[0]
        out = []
        for i in range(layers):
            flat, _ = ctx.features(self.split, f"attn.{i}", self.max_examples)
            out.append(flat.view(flat.shape[0], flat.shape[1], heads, T, T))
        return out


def uniform_attention(T: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """[1, 1, 1, T, T]: causal attention spread evenly over each query's keys."""
    causal = torch.ones(T, T, dtype=torch.float64, device=device).tril()
    return (causal / causal.sum(-1, keepdim=True)).view(1, 1, 1, T, T)


class _HeadScore(_AttentionProbe):
    queries: Literal["all", "matched"] = Field("all", description="all: every query row in the denominator "
                                               "(TransformerLens); matched: only rows the pattern scores")
    rows: list[int] | None = Field(None, min_length=1, description="the query positions scored (negative: from "
                                   "the end; default: every position)")
    exclude_first: bool = Field(False, description="ignore the attention to position 0 (TransformerLens's "
                                "exclude_bos)")
    exclude_current: bool = Field(False, description="ignore the attention of a query to itself")

    def check(self, info, model, path):
        T = info.input_shape[0]
        outside = [r for r in self.rows or () if not -T <= r < T]
        if outside:
            raise SpecError(f"{path}.rows", f"{outside[0]} is outside the task's {T} positions "
                            f"(valid: {-T} to {T - 1})")
        if self.rows is not None and len({r % T for r in self.rows}) != len(self.rows):
            raise SpecError(f"{path}.rows", "a position is listed twice")
        if self.rows is not None and self.exclude_current:
            raise SpecError(f"{path}.exclude_current", "applies to every row; leave rows out or this off")
        super().check(info, model, path)

    def metric_names(self, info: TaskInfo) -> list[str]:
        layers, heads = self.shape()
        name = self.registry_name
        return [f"{name}/L{i}H{h}" for i in range(layers) for h in range(heads)] + [f"{name}/max", f"{name}/uniform"]

    def pattern(self, ctx: ProbeContext, m: int) -> torch.Tensor:
        raise NotImplementedError

    def scores(self, attn: torch.Tensor, detect: torch.Tensor) -> torch.Tensor:
        """[S, H]: head_scores over the scored rows."""
        if self.rows is not None:  # the rows are query positions: exclude_current is refused with them
            T = attn.shape[-1]
            index = torch.tensor([r % T for r in self.rows], device=attn.device)
            attn, detect = attn.index_select(-2, index), detect.index_select(-2, index)
        return head_scores(attn, detect, self.queries, self.exclude_first, self.exclude_current)

    def measure(self, ctx: ProbeContext) -> dict[str, torch.Tensor]:
        patterns = self.patterns(ctx)
        S, m, _, T, _ = patterns[0].shape
        detect = self.pattern(ctx, m)
        scores = torch.stack([self.scores(a, detect) for a in patterns], dim=1)  # [S, L, H]
        name = self.registry_name
        metrics = {f"{name}/L{i}H{h}": scores[:, i, h] for i in range(scores.shape[1]) for h in range(scores.shape[2])}
        metrics[f"{name}/max"] = scores.flatten(1).nan_to_num(nan=-1.0).amax(1)
        # what a head attending evenly to every key it sees would score on the same examples
        uniform = uniform_attention(T, patterns[0].device).expand(S, m, 1, T, T)
        metrics[f"{name}/uniform"] = self.scores(uniform, detect)[:, 0]
        return metrics


@registry.probes.register("induction_score")
class InductionScore(_HeadScore):
    """Per layer and head, the share of attention on the token after an earlier
    copy of the query's token (TransformerLens's induction-head detector); run
    it on repeated sequences (repeated-tokens), or on vector sequences whose
    task gives each position an identity (bursty-icl: an item of the same
    class is a copy). `/uniform` is the score of even causal attention on the
    same examples: what a head that has not formed scores."""

    def check(self, info, model, path):
        if info.input_kind != "tokens" and not info.identities:
            raise SpecError(path, "induction_score reads what each position holds; this task's vector inputs "
                            "declare no position identities (tokens do; bursty-icl's vectors do)")
        super().check(info, model, path)

    def pattern(self, ctx, m):
        return induction_pattern(ctx.trainer.data.identities(self.split)[:, :m])


@registry.probes.register("previous_token_score")
class PreviousTokenScore(_HeadScore):
    """Per layer and head, the share of attention on the previous position."""

    def pattern(self, ctx, m):
        return previous_token_pattern(ctx.info.input_shape[0], ctx.trainer.data.splits[self.split][0].device)


@registry.probes.register("attention_sink")
class AttentionSink(_AttentionProbe):
    """Sink^eps of Gu et al.: the share of heads (over layers, heads and the
    split's examples) whose mean attention received at `position` exceeds eps."""

    eps: float = Field(0.3, gt=0, lt=1, description="the threshold on alpha (the paper's 0.3)")
    position: int = Field(0, ge=0, description="the sink position k (0: the first token)")

    def check(self, info, model, path):
        if self.position >= info.input_shape[0]:
            raise SpecError(f"{path}.position", f"{self.position} is outside the task's {info.input_shape[0]} "
                            "positions")
        super().check(info, model, path)

    def metric_names(self, info):
        return ["attention_sink/rate", "attention_sink/mass"]

    def measure(self, ctx):
        patterns = self.patterns(ctx)
        alphas = torch.stack([sink_importance(a)[..., self.position] for a in patterns], dim=2)  # [S, m, L, H]
        return {"attention_sink/rate": (alphas > self.eps).double().mean((1, 2, 3)),
                "attention_sink/mass": alphas.mean((1, 2, 3))}


@registry.probes.register("in_context_score")
class InContextScore(Probe):
    """The loss at the `late` positions minus the loss at the `early` ones (Olsson
    et al.'s in-context score), over the split's examples scored there; negative
    when later positions, with more context, are predicted better. A position
    is an index into the task's sequence (negative ones from the end) or a
    range [start, stop) of them, whose scored losses are averaged together.
    The defaults are Olsson et al.'s single early and late tokens. On
    repeated-tokens with distinct tokens, mind elimination: the last token of
    the second copy is the one token of r not yet repeated, known without
    induction; a range early in the second copy (with `<bos>` and r of T
    tokens, [T + 1, T + 4)) is not."""

    split: str = Field("test", description="the split measured")
    early: int | tuple[int, int] = Field(1, description="the early position, or a range [start, stop) of them")
    late: int | tuple[int, int] = Field(-1, description="the late position, or a range [start, stop) of them")
    max_examples: int | None = Field(None, ge=1, description="examples of the split read (all when omitted)")

    def check(self, info, model, path):
        check_splits([self.split], info, f"{path}.split")
        if not info.sequence:
            raise SpecError(path, "in_context_score needs a sequence task (a loss at every position)")
        T = info.input_shape[0]
        for field in ("early", "late"):
            value = getattr(self, field)
            bounds = value if isinstance(value, tuple) else (value,)
            if not all(-T <= v <= T if isinstance(value, tuple) else -T <= v < T for v in bounds):
                raise SpecError(f"{path}.{field}", f"{value} is outside the task's {T} positions "
                                f"(valid: {-T} to {T - 1})")
            if not positions(value, T):
                raise SpecError(f"{path}.{field}", f"the range {list(value)} holds no position of the task's {T}")

    def needs(self, info):
        return Needs(outputs={self.split: self.max_examples})

    def metric_names(self, info):
        return [f"in_context_score/{self.split}"]

    def measure(self, ctx):
        outputs = ctx.outputs(self.split, self.max_examples)
        targets = ctx.targets(self.split)[:, : outputs.shape[1]]
        losses, scored = token_losses(ctx.info, outputs, targets)  # [S, m, T]
        T = losses.shape[-1]
        return {f"in_context_score/{self.split}": position_loss(losses, scored, positions(self.late, T))
                - position_loss(losses, scored, positions(self.early, T))}


def positions(position: int | tuple[int, int], T: int) -> list[int]:
    """The positions (0 to T - 1) a position or a range [start, stop) names."""
    return list(range(T))[slice(*position)] if isinstance(position, tuple) else [range(T)[position]]


def position_loss(losses: torch.Tensor, scored: torch.Tensor, position: int | list[int]) -> torch.Tensor:
    """[S]: the mean loss at one position, or over several together, over the examples scored there."""
    index = [position] if isinstance(position, int) else position
    weight = scored[..., index]
    return (losses[..., index] * weight).sum((1, 2)) / weight.sum((1, 2)).clamp(min=1)


@registry.probes.register("head_ablation")
class HeadAblation(_AttentionProbe):
    """Accuracy on a split with one attention head ablated at a time, the rest
    intact (`head_ablation/L{layer}H{head}`): which heads the learned function
    needs, read causally (an optogenetic scan; the `ablate` intervention edits
    one chosen head throughout training instead). The head's output (site
    `head_out.{layer}`) is set to 0 (`mode: zero`) or to its mean over the
    probed examples, per seed and position (`mode: mean`: what the head
    writes on average, without what it reads from this example). The edits
    the interventions make at the step apply too. It costs one forward pass
    per head over the examples."""

    split: str = Field("test", description="the split measured")
    mode: Literal["zero", "mean"] = Field("mean", description="what replaces the head's output")
    max_examples: int = Field(512, ge=1, description="examples of the split read (the first ones)")

    def check(self, info, model, path):
        needs_classification(info, path, "head_ablation")
        super().check(info, model, path)
        if model.head_axis("head_out.0") is None or any(f"head_out.{i}" not in model.site_names()
                                                         for i in range(self.shape()[0])):
            raise SpecError(path, "head_ablation edits the head outputs (sites head_out.0, head_out.1, ...); this "
                            "model has none")

    def needs(self, info):
        if self.mode == "zero":
            return Needs()
        return Needs(sites={self.split: {f"head_out.{i}" for i in range(self.shape()[0])}},
                     site_examples={self.split: self.max_examples})

    def metric_names(self, info):
        layers, heads = self.shape()
        return [f"head_ablation/L{i}H{h}" for i in range(layers) for h in range(heads)]

    def measure(self, ctx):
        layers, heads = self.shape()
        x = ctx.trainer.data.splits[self.split][0][:, : self.max_examples]
        targets = ctx.targets(self.split)[:, : x.shape[1]]
        metrics = {}
        for layer in range(layers):
            site = f"head_out.{layer}"
            axis = ctx.model.head_axis(site)
            assert axis is not None  # checked
            if self.mode == "mean":  # [S, 1, ...]: per seed and position
                replacement = ctx.activations(self.split, site, self.max_examples).mean(1, keepdim=True)
            else:
                replacement = torch.zeros((), device=x.device)
            for head in range(heads):
                ablate = partial(_replace, axis, head, replacement)
                outputs, _ = ctx.run(x, {site: ablate})
                metrics[f"head_ablation/L{layer}H{head}"] = example_accuracy(ctx.info, outputs, targets).mean(1)
        return metrics


def _replace(axis: int, head: int, replacement: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """`value` with head `head` (along `axis`) replaced."""
    return torch.where(selected(value, axis, [head]), replacement.to(value.dtype), value)
