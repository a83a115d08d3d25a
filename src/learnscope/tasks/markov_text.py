"""A tiny language-model corpus with a fixed first token, for attention
sinks (Gu et al., "When Attention Sink Emerges in Language Models: An
Empirical View").

Each sequence is `<bos>` (token `vocab`) followed by `length` tokens of a
first-order Markov chain over `vocab` tokens: every token has `branching`
successors (distinct, drawn uniformly), with transition probabilities
drawn from a flat Dirichlet; the first token after `<bos>` is drawn
uniformly. The chain is drawn from the seed (`chain_seed` fixes one chain
for every seed). Next-token prediction at every position, all scored.

Why this corpus: Gu et al. find that sinks emerge once a language model
is optimized well on enough data, that where the sink sits follows the data
and the loss (the first token, in language models trained on sequences that
start alike), and that a sink stores attention that has nothing useful to
read. A sparse Markov chain is learnable to its entropy rate by a tiny model
in a few hundred updates, and the next token depends on the current one
only, which the residual stream already holds: most heads have little to
read, and the fixed `<bos>` is there to take their attention. It is a
language model in miniature (a loss to drive down, a distribution with
structure), unlike the repeated random tokens of induction, whose heads have
a job. The loss floor, the chain's entropy rate, is at most log(branching).
"""

from __future__ import annotations

import torch
from pydantic import Field, model_validator

from learnscope import registry
from learnscope.seeding import generator
from learnscope.tasks.base import Dataset, Task, TaskInfo


class MarkovChainCorpus(Task):
    """The chain's parameters, shared by the tasks built on this corpus."""

    vocab: int = Field(64, ge=2, le=100000, description="V: tokens of the chain (plus <bos>)")
    length: int = Field(32, ge=2, le=4096, description="tokens after <bos>")
    branching: int = Field(4, ge=1, description="successors of every token")
    chain_seed: int | None = Field(None, ge=0, description="one chain for every seed (seed k's); unset: each "
                                   "seed draws its own")
    train_sequences: int = Field(4096, ge=1, le=10_000_000, description="sequences trained on")
    test_sequences: int = Field(512, ge=1, le=1_000_000, description="sequences held out")

    @model_validator(mode="after")
    def _branching_fits(self):
        if self.branching > self.vocab:
            raise ValueError(f"branching ({self.branching}) must be at most vocab ({self.vocab})")
        return self

    def chain_fields(self) -> dict:
        """This corpus's chain parameters, as `markov-text` takes them."""
        return {field: getattr(self, field) for field in MarkovChainCorpus.model_fields}


@registry.tasks.register("markov-text")
class MarkovText(MarkovChainCorpus):
    repeated_sequences: int = Field(0, ge=0, description="n: training sequences repeated (the first n), with a "
                                    "`repeated` split of them; 0: none, no such split")
    repeats: int = Field(1, ge=1, description="R: times each repeated sequence is in the train split, in place "
                         "of n*(R-1) unique ones")

    @model_validator(mode="after")
    def _repeats_fit(self):
        if self.repeats > 1 and self.repeated_sequences == 0:
            raise ValueError(f"repeats ({self.repeats}) needs repeated_sequences >= 1 (0 repeats nothing)")
        if self.repeated_sequences * self.repeats > self.train_sequences:
            raise ValueError(f"repeated_sequences x repeats ({self.repeated_sequences} x {self.repeats}) must be "
                             f"at most train_sequences ({self.train_sequences})")
        return self

    def info(self) -> TaskInfo:
        splits = ("train", "test", "repeated") if self.repeated_sequences else ("train", "test")
        return TaskInfo("tokens", (self.length,), self.vocab + 1, "cross_entropy", splits,
                        vocab_size=self.vocab + 1, sequence=True)

    def transitions(self, seed: int) -> torch.Tensor:
        """[V, V]: row i the distribution of the token after token i."""
        gen = generator(seed if self.chain_seed is None else self.chain_seed, "data", "chain")
        V = self.vocab
        successors = torch.rand(V, V, generator=gen).argsort(1)[:, : self.branching]
        weights = -torch.rand(V, self.branching, generator=gen).log()  # Exp(1): normalized, a flat Dirichlet
        matrix = torch.zeros(V, V, dtype=torch.float64)
        matrix.scatter_(1, successors, weights.double())
        return matrix / matrix.sum(1, keepdim=True)

    def build(self, seed: int) -> Dataset:
        n = self.train_sequences + self.test_sequences
        matrix = self.transitions(seed)
        gen = generator(seed, "data", "sequences")
        tokens = torch.empty(n, self.length + 1, dtype=torch.long)
        tokens[:, 0] = self.vocab  # <bos>
        tokens[:, 1] = torch.randint(self.vocab, (n,), generator=gen)
        for t in range(2, self.length + 1):
            tokens[:, t] = torch.multinomial(matrix[tokens[:, t - 1]], 1, generator=gen)[:, 0]
        index = torch.arange(n)
        splits = {"train": index[: self.train_sequences], "test": index[self.train_sequences :]}
        if self.repeated_sequences:
            repeated = index[: self.repeated_sequences]
            unique = index[self.repeated_sequences : self.train_sequences - self.repeated_sequences * (self.repeats - 1)]
            splits.update(train=torch.cat([repeated.repeat(self.repeats), unique]), repeated=repeated)
        return Dataset(tokens[:, :-1], tokens[:, 1:].contiguous(), splits)
