"""Memorization of sequences: exact match of the scored continuation."""

from __future__ import annotations

import torch

from learnscope import registry
from learnscope.errors import SpecError
from learnscope.losses import example_accuracy
from learnscope.probes.base import ProbeContext
from learnscope.probes.performance import _PerSplit


@registry.probes.register("exact_match")
class ExactMatch(_PerSplit):
    """Share of examples whose every scored position is predicted right (arg-max).

    Greedy decoding from the prompt reproduces the whole continuation iff
    every teacher-forced prediction of it is right (each step then feeds back
    exactly the true token), so one forward pass measures it: verbatim
    memorization on training strings, knowledge memorization on renderings
    never trained on."""

    def check(self, info, model, path):
        if not info.sequence:
            raise SpecError(path, "exact_match needs a sequence task (next-token targets at every position)")
        super().check(info, model, path)

    def measure(self, ctx: ProbeContext) -> dict[str, torch.Tensor]:
        metrics = {}
        for split in self._splits(ctx.info):
            outputs, targets = self.outputs_and_targets(ctx, split)
            # a share of right positions is exactly 1.0 iff all are right: k / k in floating point
            metrics[f"exact_match/{split}"] = (example_accuracy(ctx.info, outputs, targets) == 1).float().mean(1)
        return metrics
