"""Loss and accuracy per split."""

from __future__ import annotations

import torch
from pydantic import Field

from learnscope import registry
from learnscope.losses import example_accuracy
from learnscope.probes.base import Needs, Probe, ProbeContext, check_splits, needs_classification
from learnscope.tasks.base import TaskInfo


class _PerSplit(Probe):
    splits: list[str] | None = Field(None, description="splits to measure; all of the task's when omitted")
    max_examples: int | None = Field(
        None, ge=1, description="measure on the first this many examples of each split (all when omitted); "
        "splits are in random order, so this is a fixed random subset, cheaper to probe often"
    )

    def _splits(self, info: TaskInfo) -> list[str]:
        return list(self.splits) if self.splits is not None else list(info.splits)

    def check(self, info, model, path):
        check_splits(self._splits(info), info, f"{path}.splits")

    def needs(self, info):
        return Needs(outputs={split: self.max_examples for split in self._splits(info)})

    def metric_names(self, info):
        return [f"{self.registry_name}/{split}" for split in self._splits(info)]

    def outputs_and_targets(self, ctx: ProbeContext, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        outputs = ctx.outputs(split, self.max_examples)
        return outputs, ctx.targets(split)[:, : outputs.shape[1]]


@registry.probes.register("loss")
class Loss(_PerSplit):
    """The task loss on each split: the training loss (the cross-entropy of `recipe.loss`, softmax or
    StableMax, or mean squared error)."""

    def measure(self, ctx: ProbeContext) -> dict[str, torch.Tensor]:
        return {
            f"loss/{split}": ctx.trainer.loss_per_seed(*self.outputs_and_targets(ctx, split))
            for split in self._splits(ctx.info)
        }


@registry.probes.register("accuracy")
class Accuracy(_PerSplit):
    """Fraction of examples whose arg-max output is the label."""

    def check(self, info, model, path):
        needs_classification(info, path, "accuracy")
        super().check(info, model, path)

    def measure(self, ctx: ProbeContext) -> dict[str, torch.Tensor]:
        metrics = {}
        for split in self._splits(ctx.info):
            outputs, targets = self.outputs_and_targets(ctx, split)
            metrics[f"accuracy/{split}"] = example_accuracy(ctx.info, outputs, targets).mean(1)
        return metrics
