"""Recognition memory: does the model tell a seen example from a matched
novel one?

`recognition` is the two-alternative forced-choice test of Orhan
("Recognition, recall, and retention of few-shot memories in large language
models"): trial i pairs seen example i (split `seen`) with its foil, example
i of `foils` (never trained on, drawn alike); the model picks the one it
gives the lower total loss, the negative log-likelihood of the string summed
over its scored positions, and the measure is the share of trials it picks
the seen one (a tie counts one half). 0.5 is chance; 1 every trial right.
Unlike `membership_auc`, which compares every member with every non-member,
each seen example meets only its own foil, as in the paper's trials.
Metric `recognition/{seen}`.
"""

from __future__ import annotations

import torch
from pydantic import Field

from learnscope import registry
from learnscope.errors import SpecError
from learnscope.losses import token_losses
from learnscope.probes.base import ALL, Needs, Probe, ProbeContext, check_splits, check_tensors


def forced_choice(seen_nll: torch.Tensor, foil_nll: torch.Tensor) -> torch.Tensor:
    """Per row, the share of trials i with seen_nll[i] < foil_nll[i], ties one
    half: [S, n], [S, n] -> [S]."""
    check_tensors("forced_choice", {"seen_nll": (seen_nll, "[S, n]", "floating"),
                                    "foil_nll": (foil_nll, "[S, n]", "floating")})
    right = (seen_nll < foil_nll).double() + 0.5 * (seen_nll == foil_nll).double()
    return right.mean(1).to(seen_nll.dtype)


@registry.probes.register("recognition")
class Recognition(Probe):
    """Per seed, two-alternative forced-choice recognition: seen example i
    against foil i, by total loss."""

    seen: str = Field("items", min_length=1, description="the split of examples trained on")
    foils: str = Field("controls", min_length=1, description="the split of matched examples never trained on, "
                       "as many as `seen`")

    def check(self, info, model, path):
        if not info.is_classification:
            raise SpecError(path, "recognition needs the log-likelihood of each target: a classification or "
                            "sequence task; this task is regression (mse)")
        check_splits([self.seen], info, f"{path}.seen")
        check_splits([self.foils], info, f"{path}.foils")

    def needs(self, info):
        return Needs(outputs={self.seen: ALL, self.foils: ALL})

    def metric_names(self, info):
        return [f"recognition/{self.seen}"]

    def _total_nll(self, ctx: ProbeContext, split: str) -> torch.Tensor:
        losses, _ = token_losses(ctx.info, ctx.outputs(split), ctx.targets(split))
        return losses.sum(-1)  # unscored positions hold 0

    def measure(self, ctx: ProbeContext) -> dict[str, torch.Tensor]:
        seen, foils = self._total_nll(ctx, self.seen), self._total_nll(ctx, self.foils)
        if seen.shape != foils.shape:
            raise SpecError("probes.recognition", f"'{self.seen}' has {seen.shape[1]} examples and '{self.foils}' "
                            f"{foils.shape[1]}: every seen example needs its own foil")
        return {f"recognition/{self.seen}": forced_choice(seen, foils)}
