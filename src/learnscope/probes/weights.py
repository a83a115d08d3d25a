"""Measurements of the parameters themselves."""

from __future__ import annotations

import torch

from learnscope import registry
from learnscope.probes.base import Probe, ProbeContext


def seed_sq_norm(tensors: list[torch.Tensor]) -> torch.Tensor:
    """Squared L2 norm over all tensors, per seed (the leading axis): [S]."""
    return sum(t.detach().reshape(t.shape[0], -1).double().square().sum(1) for t in tensors)


@registry.probes.register("weight_norm")
class WeightNorm(Probe):
    """L2 norm of all parameters, ||theta||."""

    def metric_names(self, info):
        return ["weight_norm"]

    def measure(self, ctx: ProbeContext) -> dict[str, torch.Tensor]:
        return {"weight_norm": seed_sq_norm(ctx.params).sqrt()}


@registry.probes.register("relative_weight_change")
class RelativeWeightChange(Probe):
    """||theta - theta_0|| / ||theta_0||: how far training moved the weights
    from initialization (small in the lazy regime)."""

    def metric_names(self, info):
        return ["relative_weight_change"]

    def measure(self, ctx: ProbeContext) -> dict[str, torch.Tensor]:
        moved = seed_sq_norm([p - p0 for p, p0 in zip(ctx.params, ctx.initial_params)])
        return {"relative_weight_change": (moved / seed_sq_norm(ctx.initial_params)).sqrt()}
