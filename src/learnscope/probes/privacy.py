"""Membership inference: does the model tell the examples it was trained on
from ones it never saw?

`membership_auc` is the loss-threshold attack (Yeom et al. 2018, "Privacy
Risk in Machine Learning: Analyzing the Connection to Overfitting"): score
an example by its negated loss (members tend to have lower loss) and report,
per seed, the ROC AUC of members (`members`, default `forget`) against
non-members (`nonmembers`, default `holdout`): the chance that a random
member scores above a random non-member, ties counting one half — the
Mann–Whitney U statistic over n_members · n_nonmembers, equal to the
rank-sum formula with tied ranks averaged. 0.5: indistinguishable; 1: every
member has a lower loss than every non-member. Losses are per example
(`example_losses`: for a sequence, the mean over its scored positions).

MUSE ("MUSE: Machine Unlearning Six-Way Evaluation for Language Models")
measures privacy leakage against the retrain oracle, which never saw the
forget set: `privacy_leakage` = (AUC_unlearned − AUC_retrained) /
AUC_retrained, near 0 for a good method, negative when it over-unlearns
(forget examples now look *less* like members than never-seen ones),
positive when it under-unlearns.
"""

from __future__ import annotations

import torch
from pydantic import Field

from learnscope import registry
from learnscope.errors import LearnscopeError
from learnscope.losses import example_losses
from learnscope.probes.base import ALL, Needs, Probe, ProbeContext, check_splits, check_tensors


def membership_auc(member_scores: torch.Tensor, nonmember_scores: torch.Tensor) -> torch.Tensor:
    """Per row, P(member score > non-member score) + ½ P(equal): [S, m], [S, n] -> [S];
    NaN for a row with a NaN score (a model whose loss is undefined). Computed in float64."""
    check_tensors("membership_auc", {"member_scores": (member_scores, "[S, M]", "floating"),
                                     "nonmember_scores": (nonmember_scores, "[S, K]", "floating")})
    if member_scores.shape[1] == 0 or nonmember_scores.shape[1] == 0:
        raise LearnscopeError("membership_auc: needs at least one member and one non-member score per seed; got "
                              f"{member_scores.shape[1]} and {nonmember_scores.shape[1]}")
    members, nonmembers = member_scores.double().contiguous(), nonmember_scores.double().sort(-1).values.contiguous()
    below = torch.searchsorted(nonmembers, members, side="left")  # non-members scoring lower
    not_above = torch.searchsorted(nonmembers, members, side="right")  # ... lower or equal
    auc = (below + not_above).double().sum(-1) / (2 * members.shape[-1] * nonmembers.shape[-1])
    undefined = members.isnan().any(-1) | nonmembers.isnan().any(-1)
    return auc.masked_fill(undefined, float("nan"))


def privacy_leakage(auc_unlearned, auc_retrained):
    """MUSE's PrivLeak: (AUC_unlearned − AUC_retrained) / AUC_retrained."""
    return (auc_unlearned - auc_retrained) / auc_retrained


@registry.probes.register("membership_auc")
class MembershipAUC(Probe):
    """Per seed, the ROC AUC of the loss-threshold attack, members against non-members."""

    members: str = Field("forget", min_length=1, description="the split of examples trained on")
    nonmembers: str = Field("holdout", min_length=1, description="the split of examples never trained on")

    def check(self, info, model, path):
        check_splits([self.members], info, f"{path}.members")
        check_splits([self.nonmembers], info, f"{path}.nonmembers")

    def needs(self, info):
        return Needs(outputs={self.members: ALL, self.nonmembers: ALL})

    def metric_names(self, info):
        return [f"membership_auc/{self.members}"]

    def measure(self, ctx: ProbeContext) -> dict[str, torch.Tensor]:
        scores = [-example_losses(ctx.info, ctx.outputs(split), ctx.targets(split))
                  for split in (self.members, self.nonmembers)]
        return {f"membership_auc/{self.members}": membership_auc(*scores)}
