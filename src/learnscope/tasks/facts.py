"""A synthetic corpus of facts for memorization and unlearning: a tiny
language model learns entity → attribute facts, rendered through several
templates, word by word.

Every entity (`ent0`, `ent1`, ...) has one value per attribute (city, job,
color, pet: `city3`, `job11`, ...), drawn uniformly and independently. A
fact is rendered by each of its attribute's `templates` templates, e.g.
"ent17 lives in city4 ." or "where does ent17 live ? city4 ."; a string is
`<bos>`, its words, then `<pad>` up to the fixed length. Targets are the next
tokens, scored (not IGNORE) only where they are the answer: the value and
every word after it, up to the final "." — a prompt, then its continuation.

Entities fall in three groups of fixed sizes: retain and forget (trained
on; the forget entities are the ones unlearning methods remove later), and
holdout (never trained on; same distribution, the non-members of membership
inference). Knowledge is told apart from verbatim recall by holding one
template out per (entity, attribute): each trained fact appears under all
its templates but one, the held-out one rotating over the entities of a
group (the entity of rank r in its group holds out template (r + a) mod K
for attribute a), so every template is learned on the other entities while
the held-out rendering of this entity's fact is never seen. Answering it
needs the fact, not the string: knowledge memorization. Holdout entities
are rendered the same way, so non-members look like members. Splits:

- `train`: every training string (retain ∪ forget);
- `retain`, `forget`: the training strings of each group (verbatim);
- `retain_knowledge`, `forget_knowledge`: the held-out renderings (knowledge);
- `holdout`: the holdout entities' strings, rendered like training strings;
- `test`: `retain_knowledge` (the utility split, by convention).

The corpus — values, which entities are in which group and which template
each holds out — comes from the generator (seed, "data", "corpus"): by
default the seed's own (`corpus_seed` unset), so each seed replicates the
whole experiment, facts and forget set included, and statistics across seeds
cover which facts happen to be forgotten, as every other task draws its
split per seed. `corpus_seed: k` fixes one corpus for every seed (seed k's):
a fixed benchmark, where seeds vary only initialization and batch order.
Split sizes depend only on the parameters. Every split is shuffled, so its
first m examples (a probe's `max_examples`) are a uniform subset.

Measured at the defaults (720 training strings, T = 9, vocabulary 192), 8
seeds of a transformer {layers: 2, d_model: 64, heads: 4, d_mlp: 256},
AdamW lr 3e-3, no weight decay, batch 128, 300 steps (53 epochs; 35-47 s
on 2 shared CPU cores): exact match 1.0 on train, retain and forget from
step 200 on; knowledge 0.98-1.0 (mean 0.99) on retain_knowledge and
forget_knowledge; holdout 0.03-0.17 (mean 0.08; chance, a value guessed among
16, is 0.06). lr 1e-3 reaches the same by step 200. With `templates: 2`
(each fact trained under one template only) verbatim memorization is the
same but knowledge falls to a mean of 0.36: extracting a fact from a rendering
never seen needs it seen under several, the knob for a verbatim-knowledge gap.
"""

from __future__ import annotations

import torch
from pydantic import Field

from learnscope import registry
from learnscope.losses import IGNORE
from learnscope.seeding import generator
from learnscope.tasks.base import Dataset, Task, TaskInfo

PAD, BOS, END = "<pad>", "<bos>", "."
ENTITY, VALUE = "{e}", "{v}"

# Per attribute, its templates; the value follows the entity in each, so the
# prompt names the entity and the attribute before the answer.
TEMPLATES: dict[str, tuple[str, ...]] = {
    "city": (
        "{e} lives in {v} .",
        "the home of {e} is {v} .",
        "where does {e} live ? {v} .",
        "{e} resides in the city of {v} .",
        "{e} has a house in {v} now .",
    ),
    "job": (
        "{e} works as a {v} .",
        "the job of {e} is {v} .",
        "what does {e} do for work ? {v} .",
        "{e} earns a living as a {v} .",
        "by trade {e} is a {v} by now .",
    ),
    "color": (
        "{e} likes the color {v} .",
        "the favorite color of {e} is {v} .",
        "which color does {e} prefer ? {v} .",
        "{e} always wears {v} .",
        "{e} paints every wall {v} at home .",
    ),
    "pet": (
        "{e} has a pet {v} .",
        "the pet of {e} is a {v} .",
        "what animal does {e} keep ? {v} .",
        "{e} takes care of a {v} .",
        "at home {e} feeds a {v} every day .",
    ),
}
ATTRIBUTES = tuple(TEMPLATES)
MAX_TEMPLATES = min(len(t) for t in TEMPLATES.values())
WORDS = sorted({w for ts in TEMPLATES.values() for t in ts for w in t.split()} - {ENTITY, VALUE, END})
GROUPS = ("retain", "forget", "holdout")
SPLITS = ("train", "retain", "forget", "retain_knowledge", "forget_knowledge", "holdout", "test")


@registry.tasks.register("facts")
class Facts(Task):
    retain_entities: int = Field(64, ge=1, le=10000, description="entities trained on and kept")
    forget_entities: int = Field(16, ge=1, le=10000, description="entities trained on, to be unlearned later")
    holdout_entities: int = Field(16, ge=1, le=10000, description="entities never trained on (non-members)")
    attributes: int = Field(3, ge=1, le=len(ATTRIBUTES), description=f"facts per entity: the first of {ATTRIBUTES}")
    templates: int = Field(4, ge=2, le=MAX_TEMPLATES, description="templates per attribute; one per fact held out")
    values: int = Field(16, ge=2, le=10000, description="possible values of each attribute")
    corpus_seed: int | None = Field(
        None, ge=0, description="one corpus for every seed (seed k's); unset: each seed draws its own"
    )

    def vocabulary(self) -> list[str]:
        """Token i is word i: specials, template words, entities, then each attribute's values."""
        entities = self.retain_entities + self.forget_entities + self.holdout_entities
        values = [f"{a}{v}" for a in ATTRIBUTES[: self.attributes] for v in range(self.values)]
        return [PAD, BOS, END, *WORDS, *(f"ent{e}" for e in range(entities)), *values]

    def length(self) -> int:
        """T: the longest rendering's words (the inputs drop the last token of <bos> + words)."""
        return max(len(t.split()) for a in ATTRIBUTES[: self.attributes] for t in TEMPLATES[a][: self.templates])

    def info(self) -> TaskInfo:
        vocab = len(self.vocabulary())
        return TaskInfo("tokens", (self.length(),), vocab, "cross_entropy", SPLITS, vocab_size=vocab, sequence=True)

    def build(self, seed: int) -> Dataset:
        gen = generator(seed if self.corpus_seed is None else self.corpus_seed, "data", "corpus")
        sizes = (self.retain_entities, self.forget_entities, self.holdout_entities)
        groups = torch.randperm(sum(sizes), generator=gen).split(sizes)
        values = torch.randint(self.values, (sum(sizes), self.attributes), generator=gen)
        token = {word: i for i, word in enumerate(self.vocabulary())}
        rows: list[list[int]] = []
        members: dict[str, list[int]] = {split: [] for split in SPLITS if split not in ("train", "test")}
        for group, entities in zip(GROUPS, groups):
            for rank, entity in enumerate(entities.tolist()):
                for a, attribute in enumerate(ATTRIBUTES[: self.attributes]):
                    held_out = (rank + a) % self.templates
                    for k, template in enumerate(TEMPLATES[attribute][: self.templates]):
                        if k == held_out and group == "holdout":
                            continue
                        members[f"{group}_knowledge" if k == held_out else group].append(len(rows))
                        value = f"{attribute}{values[entity, a]}"
                        words = template.replace(ENTITY, f"ent{entity}").replace(VALUE, value).split()
                        rows.append([token[BOS], *(token[w] for w in words), template.split().index(VALUE)])
        inputs, targets = self._tensors(rows)
        members["train"] = members["retain"] + members["forget"]
        splits = {name: torch.tensor(idx)[torch.randperm(len(idx), generator=gen)] for name, idx in members.items()}
        splits["test"] = splits["retain_knowledge"]
        return Dataset(inputs, targets, splits)

    def _tensors(self, rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and next-token targets [N, T] of rows `[<bos>, words..., answer index]`:
        the target of position t is token t + 1, scored from the answer word (the value,
        token answer + 1 after <bos>) to the end, padding not."""
        T = self.length()
        tokens = torch.zeros(len(rows), T + 1, dtype=torch.long)  # <pad> is token 0
        scored = torch.zeros(len(rows), T, dtype=torch.bool)
        for i, (*string, answer) in enumerate(rows):
            tokens[i, : len(string)] = torch.tensor(string)
            scored[i, answer : len(string) - 1] = True  # target t is string[t + 1]; the value is string[answer + 1]
        return tokens[:, :-1], tokens[:, 1:].masked_fill(~scored, IGNORE)
