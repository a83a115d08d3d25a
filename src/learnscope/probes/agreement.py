"""How the seeds of an ensemble agree, example by example, on a split, and
how much of their spread in accuracy that explains ("Calibrated Chaos:
Variance Between Runs of Neural Network Training is Harmless and
Inevitable", Jordan 2023).

The seeds must see the same examples (a task whose data do not depend on
the seed: the experiment's `data_seed`): example i of the
split is then one example, and p̂ᵢ, the share of the S seeds that get it
right, estimates the probability pᵢ that a run does. `agreement` reads
the split's first `max_examples` examples and reports:
- `all_right`, `none_right`, `disagree`: the shares of them that every
  seed, no seed, and some but not all seeds classify right;
- `variance`: the variance across seeds of the accuracy on a test set of
  them, the unbiased sample variance (divisor S − 1);
- `independent_variance`: what the source's simplifying assumption
  predicts it to be: if each run gets example i right independently of
  the other examples, with probability pᵢ, the accuracy on N examples has
  variance Σᵢ pᵢ(1 − pᵢ) / N². The estimate is
  Σᵢ p̂ᵢ(1 − p̂ᵢ) · S/(S − 1) / N²: the factor S/(S − 1) makes each term the
  unbiased variance of example i's correctness across the seeds, so
  `variance` − `independent_variance` is exactly the sum of the
  cross-example covariances over N² (0 in expectation when the assumption
  holds).
With `test_size` the examples are cut, in order, into consecutive test
sets of that many (a remainder is left out of the two variances), and the
two variances are means over these test sets: the variance of a test set
of `test_size` examples, estimated from many at once, which is far less
noisy than one test set's across a few seeds.
These are statistics of the ensemble: every seed gets the same value.
With one seed the variances are undefined (nan); the shares are its own.
The inputs and labels must be the same for every seed, or it refuses.
"""

from __future__ import annotations

import torch
from pydantic import Field, model_validator

from learnscope import registry
from learnscope.errors import LearnscopeError, SpecError
from learnscope.losses import example_accuracy
from learnscope.probes.base import Needs, Probe, ProbeContext, check_splits, check_tensors, needs_one_label_per_example

STATISTICS = ("all_right", "none_right", "disagree", "variance", "independent_variance")


def agreement_statistics(correct: torch.Tensor, test_size: int | None = None) -> dict[str, torch.Tensor]:
    """The ensemble's statistics (module docstring) of correct [S, N], 1 where
    seed s classifies example i right and 0 where not: one scalar each. The
    variances are those of test sets of `test_size` examples (all N when None)."""
    check_tensors("agreement_statistics", {"correct": (correct, "[S, N]", "floating")})
    correct = correct.double()
    seeds, examples = correct.shape
    size = examples if test_size is None else test_size
    if not 1 <= size <= examples:
        raise LearnscopeError(f"agreement_statistics: test_size must be from 1 to the {examples} examples; got {size}")
    rate = correct.mean(0)  # p̂ᵢ
    statistics = {
        "all_right": (rate == 1).double().mean(),
        "none_right": (rate == 0).double().mean(),
        "disagree": ((rate > 0) & (rate < 1)).double().mean(),
    }
    if seeds < 2:
        nan = torch.tensor(float("nan"), dtype=torch.float64)
        return statistics | {"variance": nan, "independent_variance": nan.clone()}
    sets = examples // size
    per_set = correct[:, : sets * size].reshape(seeds, sets, size)  # [S, sets, size]
    statistics["variance"] = per_set.mean(2).var(0, correction=1).mean()
    terms = (rate * (1 - rate))[: sets * size].reshape(sets, size)
    statistics["independent_variance"] = (terms.sum(1) * seeds / (seeds - 1) / size ** 2).mean()
    return statistics


@registry.probes.register("agreement")
class Agreement(Probe):
    """Per-example agreement of the seeds on a split and the accuracy variance that independent errors predict."""

    split: str = Field("test", description="the split measured; every seed must see the same examples in it")
    max_examples: int | None = Field(None, ge=1, description="measure on the first this many examples of the split "
                                     "(all when omitted): a smaller test set drawn from the same distribution")
    test_size: int | None = Field(None, ge=1, description="the variances are those of test sets of this many examples: "
                                  "means over the consecutive test sets the measured examples cut into (one test set "
                                  "of all of them when omitted)")

    @model_validator(mode="after")
    def _test_sets_fit(self):
        if self.test_size is not None and self.max_examples is not None and self.test_size > self.max_examples:
            raise ValueError(f"test_size ({self.test_size}) must be at most max_examples ({self.max_examples})")
        return self

    def check(self, info, model, path):
        needs_one_label_per_example(info, path, "agreement")
        check_splits([self.split], info, f"{path}.split")

    def needs(self, info):
        return Needs(outputs={self.split: self.max_examples})

    def metric_names(self, info):
        return [f"agreement/{self.split}/{name}" for name in STATISTICS]

    def measure(self, ctx: ProbeContext) -> dict[str, torch.Tensor]:
        outputs = ctx.outputs(self.split, self.max_examples)
        targets = ctx.targets(self.split)[:, : outputs.shape[1]]
        inputs = ctx.trainer.data.splits[self.split][0][:, : outputs.shape[1]]
        if not (torch.equal(inputs, inputs[:1].expand_as(inputs)) and torch.equal(targets, targets[:1].expand_as(targets))):
            raise LearnscopeError(f"agreement compares the seeds example by example, but the seeds' '{self.split}' "
                                  f"examples differ: give the experiment a data_seed (every seed then builds "
                                  f"that seed's data)")
        if self.test_size is not None and self.test_size > outputs.shape[1]:
            raise SpecError("agreement.test_size", f"{self.test_size} examples per test set, but split '{self.split}' "
                            f"has {outputs.shape[1]}; valid: 1 to {outputs.shape[1]}")
        statistics = agreement_statistics(example_accuracy(ctx.info, outputs, targets), self.test_size)
        members = outputs.shape[0]
        return {f"agreement/{self.split}/{name}": value.float().expand(members).clone()
                for name, value in statistics.items()}
