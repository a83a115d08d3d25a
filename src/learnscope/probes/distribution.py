"""The distribution a generative classifier puts on the items of a
`categorical` task: its softmax output on the task's constant input (the
first example of `split`; every example holds the same input).
- `distribution/entropy`: H(p) = −Σᵢ pᵢ log pᵢ, in nats (log M for the
  uniform distribution; 0 when it sits on one item);
- `distribution/reward`: the expected reward Σᵢ pᵢ r(i) under the task's
  rewards (`Categorical.rewards()`), what curated self-consumption
  optimizes;
- `distribution/kl_to_truth`: KL(p* ‖ p), from the task's ground truth p*.
Computed in float64 from log-softmax (items of probability 0 add 0).
"""

from __future__ import annotations

import torch
from pydantic import Field

from learnscope import registry
from learnscope.errors import SpecError
from learnscope.probes.base import Needs, Probe, ProbeContext, check_splits, check_tensors, needs_one_label_per_example
from learnscope.tasks.categorical import Categorical

MEASURES = ("entropy", "reward", "kl_to_truth")


def distribution_measures(logits: torch.Tensor, rewards: torch.Tensor, truth: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per seed, of logits [S, M] (the model's output on the constant input), rewards [M] and the truth p* [M]:
    the entropy, the expected reward and KL(p* ‖ p), each [S] float64."""
    check_tensors("distribution_measures", {"logits": (logits, "[S, M]", "floating"),
                                            "rewards": (rewards, "[M]", "floating"),
                                            "truth": (truth, "[M]", "floating")})
    log_p = torch.log_softmax(logits.double(), -1)
    p = log_p.exp()
    truth = truth.double().to(logits.device)
    log_truth = torch.where(truth > 0, truth.log(), torch.zeros_like(truth))
    return {"entropy": -(p * log_p).sum(-1),
            "reward": p @ rewards.double().to(logits.device),
            "kl_to_truth": (truth * (log_truth - log_p)).sum(-1)}


@registry.probes.register("distribution")
class Distribution(Probe):
    """Entropy, expected reward and KL from the truth of the model's distribution over a categorical task's items."""

    split: str = Field("test", description="the split whose first example (the constant input) is read")

    def check(self, info, model, path):
        needs_one_label_per_example(info, path, "distribution")
        check_splits([self.split], info, f"{path}.split")

    def needs(self, info):
        return Needs(outputs={self.split: 1})

    def metric_names(self, info):
        return [f"distribution/{name}" for name in MEASURES]

    def measure(self, ctx: ProbeContext) -> dict[str, torch.Tensor]:
        task = ctx.trainer.experiment.task
        if not isinstance(task, Categorical):
            raise SpecError("probes", f"distribution reads the items' rewards and ground truth of a 'categorical' "
                            f"task; task '{task.registry_name}' has none")
        logits = ctx.outputs(self.split, 1)[:, 0]
        measures = distribution_measures(logits, task.rewards(), task.truth())
        return {f"distribution/{name}": value.float() for name, value in measures.items()}
