"""Accuracy when a site keeps only its first k units: the order a nested
(ordered) dropout gives a representation ("Learning Ordered
Representations with Nested Dropout"; "Compressing Features for Learning
with Noisy Labels"), read as accuracy against k.

`truncation` zeroes units k..K-1 along the site's last axis (every
position of a sequence alike) in one forward pass per k and split, and
reports `truncation/{split}/k{k}`, per seed. A representation trained with
nested dropout degrades gracefully and in order as k falls; one trained
plainly spreads what it knows over every unit and loses it abruptly."""

from __future__ import annotations

import torch
from pydantic import Field, field_validator

from learnscope import registry
from learnscope.errors import SpecError
from learnscope.losses import example_accuracy
from learnscope.probes.base import Probe, ProbeContext, check_splits, needs_one_label_per_example


@registry.probes.register("truncation")
class Truncation(Probe):
    """Per seed, accuracy on each split with only the first k units of `site` kept, for each k of `keep`."""

    site: str = Field(description="a site of the model (`learnscope sites` lists them)")
    keep: list[int] = Field(min_length=1, description="the numbers of leading units kept, each >= 1")
    splits: list[str] = Field(["test"], min_length=1, description="the splits measured")

    @field_validator("keep")
    @classmethod
    def _counts(cls, keep):
        if min(keep) < 1 or len(set(keep)) != len(keep):
            raise ValueError("list distinct numbers of units, each at least 1")
        return sorted(keep)

    def check(self, info, model, path):
        needs_one_label_per_example(info, path, "truncation")
        model.check_sites([self.site], f"{path}.site")
        check_splits(self.splits, info, f"{path}.splits")

    def metric_names(self, info):
        return [f"truncation/{split}/k{k}" for split in self.splits for k in self.keep]

    def measure(self, ctx: ProbeContext) -> dict[str, torch.Tensor]:
        metrics = {}
        for split in self.splits:
            x, targets = ctx.trainer.data.splits[split]
            for k in self.keep:
                def first_k(h: torch.Tensor, k: int = k) -> torch.Tensor:
                    if k > h.shape[-1]:
                        raise SpecError("truncation.keep", f"{k} units kept, but site '{self.site}' has "
                                        f"{h.shape[-1]}; valid: 1 to {h.shape[-1]}")
                    return torch.cat([h[..., :k], torch.zeros_like(h[..., k:])], -1)

                outputs, _ = ctx.run(x, {self.site: first_k})
                metrics[f"truncation/{split}/k{k}"] = example_accuracy(ctx.info, outputs, targets).mean(1)
        return metrics
