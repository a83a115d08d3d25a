"""Softmax Collapse ("Grokking at the Edge of Numerical Stability", Prieto et al.).

Once a model fits its training set, the cross-entropy keeps pushing the
logits apart. When the largest logit leads every other by enough (about 17
in float32: e^-17 is below 2^-24, half the spacing of float32 numbers at 1),
the float32 softmax's normalizing sum rounds to exactly 1. For an example
whose label is that largest logit, the loss is then exactly 0 and so is
p_label - 1, the gradient at the label: it stops shaping the weights (the
authors' Softmax Collapse, which stalls grokking without weight decay).

`softmax_collapse` measures it as the authors' code does (their logger's
`compute_softmax_collapse`, at the default softmax precision of 32 bits):
the model's outputs cast to float32, less each row's maximum, exponentiated
and summed in float32; an example has collapsed when that sum equals 1
exactly, because every term besides the maximum's e^0 = 1 is lost in the
rounding of the sum (an underflow to 0 is the extreme case). It counts
collapsed examples whether or not the maximum is the label. The authors
also log `zero_terms`, the share of training examples whose float32 loss is
exactly 0: those of the collapsed examples whose maximum is the label
(`accuracy` and this probe bound it); this probe does not compute it.
"""

from __future__ import annotations

import torch
from pydantic import Field

from learnscope import registry
from learnscope.losses import IGNORE
from learnscope.probes.base import Needs, Probe, ProbeContext, ProbeEvent, check_splits, needs_classification


def softmax_collapsed(logits: torch.Tensor) -> torch.Tensor:
    """Bool [...]: where the float32 softmax of logits [..., C] sums to exactly 1
    with the maximum subtracted (each non-maximal term rounds away)."""
    x = logits.to(torch.float32)
    total = torch.exp(x - x.amax(dim=-1, keepdim=True)).sum(dim=-1)
    return total == 1


@registry.probes.register("softmax_collapse")
class SoftmaxCollapse(Probe):
    """The share of a split's examples (by default the training set) whose
    float32 softmax sums to exactly 1: Softmax Collapse, as the authors'
    code computes it (see the module). A sequence task counts its scored
    positions. Logits outside an example's class group do not compete (as
    in the loss)."""

    split: str = Field("train", min_length=1, description="the split to measure")
    max_examples: int | None = Field(
        None, ge=1, description="measure on the first this many examples of the split (all when omitted)"
    )
    event_at: float | None = Field(
        0.5, gt=0, le=1, description="the share at which a seed's first `softmax-collapse` event is recorded "
        "(none when unset)"
    )

    def check(self, info, model, path):
        needs_classification(info, path, "softmax_collapse")
        check_splits([self.split], info, f"{path}.split")

    def needs(self, info):
        return Needs(outputs={self.split: self.max_examples})

    def metric_names(self, info):
        return [f"softmax_collapse/{self.split}"]

    def measure(self, ctx: ProbeContext) -> dict[str, torch.Tensor]:
        outputs = ctx.outputs(self.split, self.max_examples)
        targets = ctx.targets(self.split)[:, : outputs.shape[1]]
        collapsed = softmax_collapsed(ctx.info.restrict_outputs(outputs, targets)).float()
        seeds = collapsed.shape[0]
        scored = (targets != IGNORE).reshape(seeds, -1).float()
        share = (collapsed.reshape(seeds, -1) * scored).sum(1) / scored.sum(1).clamp(min=1)
        return {f"softmax_collapse/{self.split}": share}

    def events(self, metrics: dict[str, list[float]]) -> list[ProbeEvent]:
        if self.event_at is None:
            return []
        name = f"softmax_collapse/{self.split}"
        return [ProbeEvent(k, SOFTMAX_COLLAPSE_EVENT, {"split": self.split, "share": share, "at": self.event_at})
                for k, share in enumerate(metrics[name]) if share >= self.event_at]


SOFTMAX_COLLAPSE_EVENT = "softmax-collapse"
