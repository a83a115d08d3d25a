"""Membership inference: does the model tell the examples it was trained on
from ones it never saw?

`membership_auc` reports, per seed, the ROC AUC of members (`members`,
default `forget`) against non-members (`nonmembers`, default `holdout`):
the chance that a random member scores above a random non-member, ties
counting one half — the Mann–Whitney U statistic over n_members ·
n_nonmembers, equal to the rank-sum formula with tied ranks averaged. 0.5:
indistinguishable; 1: every member scores above every non-member. The
score is the negated loss of one of two attacks (`attack`):
- `loss` (the default, and what the catalog's entries measure): the mean
  loss of an example (`example_losses`: for a sequence, the mean
  cross-entropy over its scored positions) — the loss-threshold attack of
  Yeom et al. 2018 ("Privacy Risk in Machine Learning: Analyzing the
  Connection to Overfitting"), MUSE's `PPL` key and open-unlearning's LOSS
  attack. Metric `membership_auc/{members}`;
- `min_k` (Shi et al. 2024, "Detecting Pretraining Data from Large Language
  Models"): the mean of the k share of an example's scored positions with
  the highest loss (lowest target probability), floor(k · positions) of
  them and at least one (as open-unlearning's; MUSE's code takes the floor
  alone, empty for a short sequence). MUSE's default privacy key is
  Min-40%, k = 0.4. With one label per example it is the loss attack.
  Metric `membership_auc_min{100k}/{members}`, e.g. `membership_auc_min40/forget`.

MUSE ("MUSE: Machine Unlearning Six-Way Evaluation for Language Models")
measures privacy leakage against the retrain oracle, which never saw the
forget set. Its code (muse_bench `metrics/privleak.py`, `eval.py`) labels
the forget set 0 and the holdout 1 and scores both by −loss, so its AUC is
1 − ours; its PrivLeak = (AUC'_unlearned − AUC'_retrained) /
AUC'_retrained · 100 in its orientation is, with a = AUC_unlearned and
r = AUC_retrained in ours (open-unlearning's `privleak` converts the same
way, by 1 − AUC),

    `privacy_leakage`(a, r) = (r − a) / (1 − r).

Near 0 for a good method; negative when it under-unlearns (the attack still
sees the forget set as members: a > r; the never-unlearned original at
a ≈ 1, r ≈ 0.5 reads ≈ −1); positive when it over-unlearns (forget examples
now look *less* like members than never-seen ones: a < r). MUSE reports it
×100, in percent, as it does all its measures; learnscope keeps shares
throughout, so −0.95 here is MUSE's −95. Undefined (±inf or NaN) for an
oracle at r = 1.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field

from learnscope import registry
from learnscope.errors import LearnscopeError, SpecError
from learnscope.losses import example_losses, token_losses
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


def min_k_losses(losses: torch.Tensor, scored: torch.Tensor, k: float) -> torch.Tensor:
    """[S, B, T] position losses, [S, B, T] which are scored -> [S, B]: per
    example, the mean of its max(1, floor(k · scored positions)) highest
    losses (the Min-k% score as a loss); 0 for an example with no scored
    position, as `example_losses` gives it."""
    check_tensors("min_k_losses", {"losses": (losses, "[S, B, T]", "floating")})
    if scored.shape != losses.shape or scored.dtype != torch.bool:
        raise LearnscopeError(f"min_k_losses: scored must be a bool tensor of the losses' shape {tuple(losses.shape)}; "
                              f"got {scored.dtype} {tuple(scored.shape)}")
    if not 0 < k <= 1:
        raise LearnscopeError(f"min_k_losses: k is a share of positions, in (0, 1]; got {k}")
    counts = scored.sum(-1)
    # in float64 like MUSE's int(len · ratio): floor(10 · 0.3) = 3, where float32 would give 2 or 3
    taken = (counts.double() * k).floor().long().clamp(min=1)
    ranked = losses.double().masked_fill(~scored, -math.inf).sort(-1, descending=True).values
    top_sums = ranked.masked_fill(ranked == -math.inf, 0.0).cumsum(-1)
    chosen = top_sums.gather(-1, (taken - 1).clamp(max=losses.shape[-1] - 1).unsqueeze(-1)).squeeze(-1)
    return torch.where(counts > 0, chosen / taken, torch.zeros_like(chosen))


def privacy_leakage(auc_unlearned, auc_retrained):
    """MUSE's PrivLeak, as its code computes it (without its ×100), from
    AUCs in this module's orientation (members scored higher): (r − a) /
    (1 − r) for a = `auc_unlearned`, r = `auc_retrained`. Negative:
    under-unlearned; positive: over-unlearned. Scalars, arrays or Series."""
    return (auc_retrained - auc_unlearned) / (1 - auc_retrained)


@registry.probes.register("membership_auc")
class MembershipAUC(Probe):
    """Per seed, the ROC AUC of a membership attack (`loss` or `min_k`),
    members against non-members."""

    members: str = Field("forget", min_length=1, description="the split of examples trained on")
    nonmembers: str = Field("holdout", min_length=1, description="the split of examples never trained on")
    attack: Literal["loss", "min_k"] = Field("loss", description="the score: an example's mean loss, or the mean "
                                             "of its k share of highest position losses (Min-k%)")
    k: float = Field(0.4, gt=0, le=1, description="min_k: the share of an example's scored positions it averages")

    def check(self, info, model, path):
        check_splits([self.members], info, f"{path}.members")
        check_splits([self.nonmembers], info, f"{path}.nonmembers")
        if self.attack == "min_k" and not info.is_classification:
            raise SpecError(f"{path}.attack", "min_k needs the log-probability of each target: a classification "
                            "or sequence task; this task is regression (mse). The loss attack applies to it")

    def needs(self, info):
        return Needs(outputs={self.members: ALL, self.nonmembers: ALL})

    def metric_names(self, info):
        return [self._metric()]

    def _metric(self) -> str:
        if self.attack == "loss":
            return f"membership_auc/{self.members}"
        return f"membership_auc_min{100 * self.k:g}/{self.members}"

    def _losses(self, ctx: ProbeContext, split: str) -> torch.Tensor:
        outputs, targets = ctx.outputs(split), ctx.targets(split)
        if self.attack == "loss":
            return example_losses(ctx.info, outputs, targets)
        return min_k_losses(*token_losses(ctx.info, outputs, targets), self.k)

    def measure(self, ctx: ProbeContext) -> dict[str, torch.Tensor]:
        scores = [-self._losses(ctx, split) for split in (self.members, self.nonmembers)]
        return {self._metric(): membership_auc(*scores)}
