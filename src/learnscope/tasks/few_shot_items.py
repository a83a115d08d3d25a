"""A background language-model corpus plus items to be seen once, and
matched items never seen: recognition, recall and retention of few-shot
memories (Orhan, "Recognition, recall, and retention of few-shot memories
in large language models").

The background corpus is `markov-text`'s: `<bos>` (token `vocab`) and
`length` tokens of a first-order Markov chain over `vocab` tokens with
`branching` successors per token, every position scored. An item is
`<bos>` and `length` tokens drawn uniformly and independently (a stimulus
without structure: the chain does not predict it), its first `cue` tokens
the cue and the rest the continuation. Items come in matched pairs: item i
of `items` and item i of `controls` are drawn alike, and only the first is
ever trained on (once, by the `single-exposure` intervention), so each
control is the novel foil of its item in a two-alternative recognition
trial (probe `recognition`). Splits:

- `train`, `test`: background sequences (trained on; held out);
- `items`, `controls`: the item strings, every position scored (what an
  exposure trains on, and what recognition scores: a string's whole loss);
- `items_recall`, `controls_recall`: the same strings with only the
  continuation scored (the positions after the cue), for recall: the share
  of continuation tokens predicted right from the true prefix (`accuracy`)
  or every one of them (`exact_match`, verbatim recall).

The chain and the items come from the seed's generators (`chain_seed`
fixes one chain for every seed, as in `markov-text`); the background
sequences are `markov-text`'s exactly for the same parameters.
"""

from __future__ import annotations

import torch
from pydantic import Field, model_validator

from learnscope import registry
from learnscope.losses import IGNORE
from learnscope.seeding import generator
from learnscope.tasks.base import Dataset, TaskInfo
from learnscope.tasks.markov_text import MarkovChainCorpus, MarkovText

SPLITS = ("train", "test", "items", "controls", "items_recall", "controls_recall")


@registry.tasks.register("few-shot-items")
class FewShotItems(MarkovChainCorpus):
    length: int = Field(16, ge=2, le=4096, description="tokens after <bos>, background and items alike")
    test_sequences: int = Field(256, ge=1, le=1_000_000, description="background sequences held out")
    items: int = Field(32, ge=1, le=100_000, description="items (seen once) and as many matched controls")
    cue: int = Field(4, ge=1, description="an item's leading tokens given as the cue of recall (not scored there)")

    @model_validator(mode="after")
    def _cue_fits(self):
        if self.cue >= self.length:
            raise ValueError(f"cue ({self.cue}) must be below length ({self.length}): the continuation is the rest")
        return self

    def background(self) -> MarkovText:
        return MarkovText(**self.chain_fields())

    def info(self) -> TaskInfo:
        return TaskInfo("tokens", (self.length,), self.vocab + 1, "cross_entropy", SPLITS,
                        vocab_size=self.vocab + 1, sequence=True)

    def build(self, seed: int) -> Dataset:
        corpus = self.background().build(seed)
        gen = generator(seed, "data", "items")
        strings = torch.empty(2 * self.items, self.length + 1, dtype=torch.long)
        strings[:, 0] = self.vocab  # <bos>
        strings[:, 1:] = torch.randint(self.vocab, (2 * self.items, self.length), generator=gen)
        inputs, targets = strings[:, :-1], strings[:, 1:]
        # recall scores the continuation: position t predicts token t + 1, so the cue (tokens 1..cue) is
        # targets 0..cue-1, and position cue, having read <bos> and the cue, predicts the first continuation token
        recall_targets = targets.clone()
        recall_targets[:, : self.cue] = IGNORE
        n = corpus.targets.shape[0]
        k = self.items
        splits = dict(corpus.splits)
        # rows after the background: items, controls (all scored), then the same two with the cue unscored
        for offset, name in enumerate(("items", "controls", "items_recall", "controls_recall")):
            splits[name] = torch.arange(n + offset * k, n + (offset + 1) * k)
        return Dataset(torch.cat([corpus.inputs, inputs, inputs]),
                       torch.cat([corpus.targets, targets, recall_targets]), splits)
