"""A generative model in its simplest form: a categorical distribution over
M items, learned by maximum likelihood from samples of a fixed ground truth,
with a fixed reward on the items (a human preference); the setting of
"Self-Consuming Generative Models with Curated Data Provably Optimize Human
Preferences" (Ferbach et al. 2024) reduced to its discrete core.

Every example's input is the same constant (a 1-vector holding 1), and its
label is an item drawn from the ground truth p*(i) ∝ (i + 1)^(−zipf)
(uniform for zipf 0); a classifier's softmax output on the constant is the
model's distribution over the items, and training by cross-entropy is
maximum likelihood. `train` holds `samples` draws, `test` `test_samples`
more (its cross-entropy estimates H(p*) + KL(p* ‖ model)). With `copies` k
the training split holds its N draws k times over, in k consecutive blocks
(the same draws whatever k): the room a self-consuming loop that
accumulates its generations writes into (`curate`, mode accumulate).

The reward of item i is r(i) = `reward` · i / (M − 1): the last item is
preferred most. The task owns it (`rewards()`), so the curation that
optimizes it (`curate`) and the probe that reports it (`distribution`)
read one definition. The labels come from the seed's generator ("data").
"""

from __future__ import annotations

import torch
from pydantic import Field

from learnscope import registry
from learnscope.seeding import generator
from learnscope.tasks.base import Dataset, Task, TaskInfo


@registry.tasks.register("categorical")
class Categorical(Task):
    items: int = Field(32, ge=2, le=100_000, description="M: the number of items (outcomes) the model generates")
    zipf: float = Field(0.0, ge=0, description="the ground truth p*(i) ∝ (i + 1)^(-zipf); 0: uniform")
    samples: int = Field(1000, ge=1, description="N: training draws from the ground truth")
    test_samples: int = Field(1000, ge=1, description="test draws from the ground truth")
    reward: float = Field(5.0, description="β: the reward of item i is β · i / (M - 1)")
    copies: int = Field(1, ge=1, le=10_000, description="the training split holds its N draws this many times over "
                        "(room for a self-consuming loop's accumulated generations)")

    def info(self) -> TaskInfo:
        return TaskInfo("vector", (1,), self.items, "cross_entropy", ("train", "test"))

    def truth(self) -> torch.Tensor:
        """[M] float64: the ground-truth distribution p*."""
        weights = torch.arange(1, self.items + 1, dtype=torch.float64) ** -self.zipf
        return weights / weights.sum()

    def rewards(self) -> torch.Tensor:
        """[M] float64: r(i) = β · i / (M − 1)."""
        return self.reward * torch.arange(self.items, dtype=torch.float64) / (self.items - 1)

    def build(self, seed: int) -> Dataset:
        n = self.samples + self.test_samples
        labels = torch.multinomial(self.truth(), n, replacement=True, generator=generator(seed, "data"))
        return Dataset(torch.ones(n, 1), labels, {"train": torch.arange(self.samples).repeat(self.copies),
                                                  "test": torch.arange(self.samples, n)})
