"""Random token sequences repeated once, the induction-head testbed (Olsson
et al., "In-context Learning and Induction Heads"; the repeated random
tokens on which TransformerLens detects induction heads).

A sequence is `<bos>`, then r, then r again: r is `length` tokens drawn
uniformly from a vocabulary of `vocab` tokens (distinct within r by
default, so every token of the second copy has exactly one earlier
occurrence and the induction target is unambiguous; `distinct: false` draws
with replacement). The model predicts the next token at every position
(inputs the sequence but its last token, targets the sequence shifted by
one), all positions scored: in the first copy the next token is unknowable
(loss about log(vocab)); in the second copy, from the position of r_0
on, it is the token that followed the current one in the first copy, so
the loss there falls when an induction head forms. With `<bos>`, input
position p < length predicts the first copy's r_p (unknowable), position
length the second copy's r_0, and positions length+1..2*length-1 the
second copy's r_1..r_{length-1}: the in-context ones, predictable by
induction (without `<bos>` every position is one less).

`<bos>` (token `vocab`, on by default) is the fixed first token the
sequences of a language model start with, a place for heads to rest
(attention sinks); `bos: false` starts with r. Every sequence is drawn
from the seed's generator; `train` and `test` are disjoint draws.
"""

from __future__ import annotations

import torch
from pydantic import Field, model_validator

from learnscope import registry
from learnscope.seeding import generator
from learnscope.tasks.base import Dataset, Task, TaskInfo


@registry.tasks.register("repeated-tokens")
class RepeatedTokens(Task):
    vocab: int = Field(64, ge=2, le=1_000_000, description="V: tokens r is drawn from")
    length: int = Field(16, ge=2, le=4096, description="T: tokens of r; the sequence is <bos> r r")
    distinct: bool = Field(True, description="the tokens of r are distinct (needs T <= V)")
    bos: bool = Field(True, description="the sequence starts with a <bos> token (token V)")
    min_length: int | None = Field(None, ge=1, description=(
        "train sequences repeat the first m tokens of r, m uniform in [min_length, length], and end in fresh "
        "random tokens: the copies' offset varies, so attending to a fixed position back cannot predict the "
        "second copy and only an induction mechanism (content, not position) can; test sequences repeat all of r"))
    train_sequences: int = Field(4096, ge=1, le=10_000_000)
    test_sequences: int = Field(512, ge=1, le=1_000_000)

    @model_validator(mode="after")
    def _fits(self):
        if self.distinct and self.length > self.vocab:
            raise ValueError(f"distinct tokens need length ({self.length}) <= vocab ({self.vocab})")
        if self.min_length is not None and self.min_length > self.length:
            raise ValueError(f"min_length ({self.min_length}) exceeds length ({self.length})")
        return self

    def positions(self) -> int:
        """Input positions: <bos> r r but its last token."""
        return 2 * self.length - 1 + int(self.bos)

    def info(self) -> TaskInfo:
        vocab = self.vocab + int(self.bos)
        return TaskInfo("tokens", (self.positions(),), vocab, "cross_entropy", ("train", "test"),
                        vocab_size=vocab, sequence=True)

    def build(self, seed: int) -> Dataset:
        n = self.train_sequences + self.test_sequences
        gen = generator(seed, "data", "sequences")
        if self.distinct:
            r = torch.rand(n, self.vocab, generator=gen).argsort(1)[:, : self.length]
        else:
            r = torch.randint(self.vocab, (n, self.length), generator=gen)
        parts = [r, r]
        if self.min_length is not None:  # train sequences: <bos> r[:m] r[:m] then fresh tokens, m per sequence
            train = self.train_sequences
            m = torch.randint(self.min_length, self.length + 1, (n, 1), generator=gen)
            m[train:] = self.length
            fresh = torch.randint(self.vocab, (n, 2 * self.length), generator=gen)
            p = torch.arange(2 * self.length).unsqueeze(0)
            copied = r.gather(1, torch.where(p < m, p, p - m).clamp(max=self.length - 1))
            parts = [torch.where(p < 2 * m, copied, fresh)]
        if self.bos:
            parts.insert(0, torch.full((n, 1), self.vocab, dtype=torch.long))
        tokens = torch.cat(parts, dim=1)
        index = torch.arange(n)
        return Dataset(tokens[:, :-1], tokens[:, 1:].contiguous(),
                       {"train": index[: self.train_sequences], "test": index[self.train_sequences :]})
