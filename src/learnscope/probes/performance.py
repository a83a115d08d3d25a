"""Loss and accuracy per split."""

from __future__ import annotations

import torch
from pydantic import Field

from learnscope import registry
from learnscope.probes.base import Needs, Probe, ProbeContext, check_splits, needs_classification
from learnscope.tasks.base import TaskInfo


class _PerSplit(Probe):
    splits: list[str] | None = Field(None, description="splits to measure; all of the task's when omitted")

    def _splits(self, info: TaskInfo) -> list[str]:
        return list(self.splits) if self.splits is not None else list(info.splits)

    def check(self, info, model, path):
        check_splits(self._splits(info), info, f"{path}.splits")

    def needs(self, info):
        return Needs(outputs=set(self._splits(info)))

    def metric_names(self, info):
        return [f"{self.registry_name}/{split}" for split in self._splits(info)]


@registry.probes.register("loss")
class Loss(_PerSplit):
    """The task loss (cross-entropy or mean squared error) on each split."""

    def measure(self, ctx: ProbeContext) -> dict[str, torch.Tensor]:
        return {
            f"loss/{split}": ctx.trainer.loss_per_seed(ctx.outputs(split), ctx.targets(split))
            for split in self._splits(ctx.info)
        }


@registry.probes.register("accuracy")
class Accuracy(_PerSplit):
    """Fraction of examples whose arg-max output is the label."""

    def check(self, info, model, path):
        needs_classification(info, path, "accuracy")
        super().check(info, model, path)

    def measure(self, ctx: ProbeContext) -> dict[str, torch.Tensor]:
        return {
            f"accuracy/{split}": (ctx.outputs(split).argmax(-1) == ctx.targets(split)).float().mean(1)
            for split in self._splits(ctx.info)
        }
