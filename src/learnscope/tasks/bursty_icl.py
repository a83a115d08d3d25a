"""Bursty in-context classification, the generator of Reddy, "The mechanistic
basis of data dependence and abrupt learning in an in-context classification
task": the testbed where in-context learning (ICL) and in-weights learning
(IWL) compete, and ICL appears abruptly.

K classes live in D dimensions, class k with mean mu_k ~ N(0, I/D); an item
of class k is (mu_k + eps * eta) / sqrt(1 + eps^2), eta ~ N(0, I/D), a fresh
draw every time. The K classes are mapped onto L labels, K/L classes per
label (K a multiple of L), by a permutation drawn per seed. A sequence is N
item-label pairs and then a query item; the target is the query's label.

Classes are drawn Zipf(alpha): p_k ∝ k^-alpha over the ranks k = 1..K
(alpha 0: uniform). A fraction `p_bursty` of the sequences is bursty: N/B
distinct classes (drawn by the Zipf weights without replacement) appear B
times each, in random order, and the query is of one of them, so the
context holds its label. The rest have i.i.d. contexts (N classes drawn
with replacement) and a query class drawn independently, usually absent
from the context. B = 0 makes every sequence i.i.d. (no burstiness).

Splits:

- `train`, `test`: `train_sequences` and `test_sequences` draws of that
  mixture (held-out draws of the same distribution);
- `in_weights`: i.i.d. context, query from the training classes: solvable
  only from the weights (the query's class is usually absent from context);
- `in_context`: items of novel classes (`novel_classes` fresh means, never
  trained on), bursty (burstiness `in_context_burstiness`, default B or 2
  when B is 0), the context's classes given distinct labels drawn at random
  per sequence: solvable only by reading the label off the context.

Representation. The transformer reads a sequence of 2N + 1 positions
[x_1, l_1, ..., x_N, l_N, x_q]. With `items: vectors` (the paper's setup)
each position is a float vector of F = D + L features: an item fills the
first D, a label is one-hot in the last L (zeros elsewhere); the task
declares vector inputs of shape (2N + 1, F) and the transformer embeds them
with a linear map (F -> d_model), so label positions look up a learned
label embedding exactly as tokens would, items are projected linearly, and
every site (`attn.i`, `q.i`, ...) is unchanged. Each position's identity
(the token it would be with `items: tokens`: its class, or its label) comes
with the vectors, so the induction-head detector reads vector sequences:
an item of the query's class is a "copy" of the query. The target is one of L
labels, read at the last position (the query), as any classifier of a
sequence. `TaskInfo` gains only what the detectors need (vector inputs
with a position axis, `identities`), and the model's change is the
embedding alone.

With `items: tokens` every class is one token (no exemplar noise: eps is
unused): training classes are tokens 0..K-1, the novel classes the next
`novel_classes` tokens (never seen in training: their embeddings stay as
initialized), labels the last L tokens. This is the setting of the
weight-forgetting papers (Anand et al., "Dual Process Learning"; Chen et
al., "Improving Language Plasticity via Pretraining with Active
Forgetting"), where resetting the token embedding drives in-context use.

Sizes: a vector sequence holds (2N + 1) * (D + L) floats, 6.5 kB at the
defaults, so the default 4096 training sequences take 27 MB per seed
(the paper samples fresh sequences for every batch; a fixed pool is what a
seed ensemble can hold).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field, model_validator

from learnscope import registry
from learnscope.seeding import generator
from learnscope.tasks.base import Dataset, Task, TaskInfo

SPLITS = ("train", "test", "in_weights", "in_context")


@registry.tasks.register("bursty-icl")
class BurstyICL(Task):
    classes: int = Field(512, ge=2, le=100000, description="K: classes of the training distribution")
    labels: int = Field(32, ge=2, le=10000, description="L: labels; K is a multiple of L")
    context: int = Field(8, ge=1, le=256, description="N: item-label pairs before the query")
    dim: int = Field(63, ge=1, le=4096, description="D: dimension of an item (items: vectors)")
    burstiness: int = Field(4, ge=0, description="B: each context class of a bursty sequence appears B times "
                            "(0: no bursty sequences); divides N")
    p_bursty: float = Field(1.0, ge=0, le=1, description="fraction of bursty sequences in train and test")
    alpha: float = Field(1.0, ge=0, description="Zipf exponent of the class frequencies (0: uniform)")
    eps: float = Field(0.1, ge=0, description="within-class noise of an item (items: vectors)")
    items: Literal["vectors", "tokens"] = Field("vectors", description="items as D-dim vectors, or one token "
                                                "per class")
    novel_classes: int | None = Field(None, ge=1, le=100000, description="classes of the in_context split, "
                                      "never trained on (default K)")
    in_context_burstiness: int | None = Field(None, ge=1, description="burstiness of the in_context split "
                                              "(default B, or 2 when B is 0); divides N")
    train_sequences: int = Field(4096, ge=1, le=10_000_000)
    test_sequences: int = Field(1024, ge=1, le=1_000_000, description="sequences of each evaluation split")

    @model_validator(mode="after")
    def _consistent(self):
        if self.classes % self.labels:
            raise ValueError(f"classes ({self.classes}) must be a multiple of labels ({self.labels})")
        if self.burstiness and self.context % self.burstiness:
            raise ValueError(f"burstiness ({self.burstiness}) must divide context ({self.context})")
        if self.burstiness and self.context // self.burstiness > self.classes:
            raise ValueError(f"a bursty context needs {self.context // self.burstiness} distinct classes; "
                             f"there are {self.classes}")
        b = self.eval_burstiness
        if self.context % b:
            raise ValueError(f"in_context_burstiness ({b}) must divide context ({self.context})")
        if self.context // b > min(self.labels, self.novel):
            raise ValueError(f"an in_context sequence holds {self.context // b} classes with distinct labels; "
                             f"labels ({self.labels}) and novel_classes ({self.novel}) must be at least that")
        return self

    @property
    def novel(self) -> int:
        return self.novel_classes if self.novel_classes is not None else self.classes

    @property
    def eval_burstiness(self) -> int:
        if self.in_context_burstiness is not None:
            return self.in_context_burstiness
        return self.burstiness or min(2, self.context)

    def length(self) -> int:
        return 2 * self.context + 1

    def info(self) -> TaskInfo:
        if self.items == "tokens":
            vocab = self.classes + self.novel + self.labels
            return TaskInfo("tokens", (self.length(),), self.labels, "cross_entropy", SPLITS, vocab_size=vocab)
        return TaskInfo("vector", (self.length(), self.dim + self.labels), self.labels, "cross_entropy", SPLITS,
                        identities=True)

    # ------------------------------------------------------------ sequences of class indices

    def _zipf(self) -> torch.Tensor:
        return torch.arange(1, self.classes + 1, dtype=torch.float64).pow(-self.alpha)

    def _iid(self, n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """[n, N] context classes and [n] query classes, all i.i.d. Zipf."""
        drawn = torch.multinomial(self._zipf(), n * (self.context + 1), replacement=True, generator=gen)
        drawn = drawn.view(n, self.context + 1)
        return drawn[:, :-1], drawn[:, -1]

    def _bursty(self, n: int, weights: torch.Tensor, burstiness: int, gen: torch.Generator
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """[n, N] context classes (N/B distinct ones B times each, shuffled), [n] query
        classes (one of them), [n, N] the slot (0..N/B-1) of each context class and
        [n] the query's slot."""
        distinct = self.context // burstiness
        chosen = draw_distinct(weights, n, distinct, gen)
        slots = torch.arange(distinct).repeat_interleave(burstiness).expand(n, -1)
        order = torch.rand(n, self.context, generator=gen).argsort(1)
        slots = slots.gather(1, order)
        query = torch.randint(distinct, (n,), generator=gen)
        return chosen.gather(1, slots), chosen.gather(1, query[:, None])[:, 0], slots, query

    def _mixture(self, n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        context, query = self._iid(n, gen)
        bursty = torch.rand(n, generator=gen) < self.p_bursty
        if self.burstiness and bursty.any():
            b_context, b_query, _, _ = self._bursty(n, self._zipf(), self.burstiness, gen)
            context = torch.where(bursty[:, None], b_context, context)
            query = torch.where(bursty, b_query, query)
        return context, query

    # ------------------------------------------------------------ rendering

    def build(self, seed: int) -> Dataset:
        gen = generator(seed, "data", "classes")
        class_label = torch.randperm(self.classes, generator=gen) % self.labels  # K/L classes per label
        means = torch.randn(self.classes + self.novel, self.dim, generator=gen) / math.sqrt(self.dim)
        parts: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        for split, n in (("train", self.train_sequences), ("test", self.test_sequences)):
            context, query = self._mixture(n, generator(seed, "data", split))
            parts[split] = (context, class_label[context], query, class_label[query])
        split_gen = generator(seed, "data", "in_weights")
        context, query = self._iid(self.test_sequences, split_gen)
        parts["in_weights"] = (context, class_label[context], query, class_label[query])
        split_gen = generator(seed, "data", "in_context")
        n, b = self.test_sequences, self.eval_burstiness
        uniform = torch.ones(self.novel, dtype=torch.float64)
        novel, query, slots, query_slot = self._bursty(n, uniform, b, split_gen)
        slot_label = torch.rand(n, self.labels, generator=split_gen).argsort(1)[:, : self.context // b]  # distinct
        query_label = slot_label.gather(1, query_slot[:, None])[:, 0]
        parts["in_context"] = (novel + self.classes, slot_label.gather(1, slots), query + self.classes, query_label)

        inputs, identities, targets, splits, start = [], [], [], {}, 0
        for split in SPLITS:
            context, context_labels, query, query_label = parts[split]
            # what each position holds: the token of its class or label, also for vector items
            identities.append(self._tokens(context, context_labels, query))
            if self.items == "vectors":
                inputs.append(self._vectors(context, context_labels, query, means,
                                            generator(seed, "data", split, "items")))
            targets.append(query_label)
            splits[split] = torch.arange(start, start + len(query))
            start += len(query)
        if self.items == "tokens":
            return Dataset(torch.cat(identities), torch.cat(targets), splits)
        return Dataset(torch.cat(inputs), torch.cat(targets), splits, torch.cat(identities))

    def _tokens(self, context, context_labels, query) -> torch.Tensor:
        label_token = self.classes + self.novel + context_labels
        pairs = torch.stack([context, label_token], dim=2).flatten(1)  # x_1, l_1, ..., x_N, l_N
        return torch.cat([pairs, query[:, None]], dim=1)

    def _vectors(self, context, context_labels, query, means, gen) -> torch.Tensor:
        n, N, D = len(query), self.context, self.dim
        classes = torch.cat([context, query[:, None]], dim=1)  # [n, N + 1]
        noise = torch.randn(n, N + 1, D, generator=gen) / math.sqrt(D)
        items = (means[classes] + self.eps * noise) / math.sqrt(1 + self.eps**2)
        x = torch.zeros(n, 2 * N + 1, D + self.labels)
        x[:, 0::2, :D] = items
        x[:, 1::2, D:] = torch.nn.functional.one_hot(context_labels, self.labels).float()
        return x


def draw_distinct(weights: torch.Tensor, n: int, k: int, gen: torch.Generator) -> torch.Tensor:
    """[n, k] indices drawn from `weights` [K] without replacement within each row,
    by successive sampling (what torch.multinomial without replacement does), with
    memory O(n k) rather than an n x K matrix of weights: draw j is redrawn in the
    rows where it repeats one of their earlier draws, which samples the weights
    of the classes left, renormalized."""
    chosen = torch.empty(n, k, dtype=torch.long)
    for j in range(k):
        draw = torch.multinomial(weights, n, replacement=True, generator=gen)
        clash = (chosen[:, :j] == draw[:, None]).any(1)
        while clash.any():
            draw[clash] = torch.multinomial(weights, int(clash.sum()), replacement=True, generator=gen)
            clash = (chosen[:, :j] == draw[:, None]).any(1)
        chosen[:, j] = draw
    return chosen
