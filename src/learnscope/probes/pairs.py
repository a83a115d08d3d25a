"""How far the two members of each pair of seeds have come apart: the
pairs (0, 1), (2, 3), ... that `spawn` makes (a run and its perturbed copy,
on the same data and batches). Each measure is one number per pair,
reported for both of its members. The three are those of "The Butterfly
Effect: Neural Network Training Trajectories Are Highly Sensitive to
Initial Conditions":
- `pair_distance`: the L2 distance between the members' trained
  parameters, all tensors together;
- `pair_barrier`: the loss barrier on a split along the straight line
  between them, max over α of L((1 − α)θ₀ + αθ₁) − ((1 − α)L(θ₀) + αL(θ₁))
  on a grid of α (Frankle et al.'s linear mode connectivity; 0 when the
  line stays as low as its ends);
- `pair_cka`: the linear CKA of a site's activations on a split, between
  the members (1: the same representation up to rotation and scale).
"""

from __future__ import annotations

import torch
from pydantic import Field

from learnscope import registry
from learnscope.errors import LearnscopeError
from learnscope.losses import example_losses
from learnscope.probes.base import Needs, Probe, ProbeContext, check_splits


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Linear CKA per seed of activations x [S, B, ...] and y [S, B, ...] (each
    example flattened): HSIC(X, Y) / √(HSIC(X, X) · HSIC(Y, Y)) with HSIC(X, Y)
    = Σ (H X Xᵀ H) ∘ (H Y Yᵀ H), H the centering matrix: [S]. A site constant
    over the examples has no similarity structure: CKA 0, not 0/0."""
    x, y = x.reshape(x.shape[0], x.shape[1], -1), y.reshape(y.shape[0], y.shape[1], -1)

    def centered_gram(z: torch.Tensor) -> torch.Tensor:
        gram = z @ z.transpose(1, 2)
        return gram - gram.mean(1, keepdim=True) - gram.mean(2, keepdim=True) + gram.mean((1, 2), keepdim=True)

    kx, ky = centered_gram(x), centered_gram(y)
    hsic = (kx * ky).sum((1, 2))
    scale = ((kx * kx).sum((1, 2)) * (ky * ky).sum((1, 2))).clamp_min(torch.finfo(kx.dtype).tiny).sqrt()
    return hsic / scale


def pairs(ctx: ProbeContext, what: str) -> tuple[slice, slice]:
    """The first and the second members of the pairs, as slices of the seed
    axis. One seed alone is its own pair: the memory estimate measures a
    probe step of a one-seed trainer (a run of one seed is refused by what
    pairs the seeds, `spawn`)."""
    members = len(ctx.trainer.seeds)
    if members == 1:
        return slice(0, 1), slice(0, 1)
    if members % 2:
        raise LearnscopeError(f"{what} measures pairs of seeds, (0, 1), (2, 3), ...; {members} seeds leave one "
                              f"without a partner: give an even number")
    return slice(0, None, 2), slice(1, None, 2)


def both(per_pair: torch.Tensor, members: int) -> torch.Tensor:
    """One value per pair [S/2] -> the same value for both members [S]."""
    return per_pair.repeat_interleave(2)[:members]


@registry.probes.register("pair_distance")
class PairDistance(Probe):
    """L2 distance between each pair's members' trained parameters."""

    def metric_names(self, info):
        return ["pair_distance"]

    def measure(self, ctx: ProbeContext) -> dict[str, torch.Tensor]:
        first, second = pairs(ctx, "pair_distance")
        squared = sum((p[second] - p[first]).detach().flatten(1).double().square().sum(1) for p in ctx.params)
        return {"pair_distance": both(squared.sqrt(), len(ctx.trainer.seeds))}


@registry.probes.register("pair_barrier")
class PairBarrier(Probe):
    """The loss barrier on a split along the line between each pair's members."""

    split: str = Field("train", description="the split the loss is measured on")
    points: int = Field(11, ge=3, le=101, description="grid of α from 0 to 1, both ends included")
    max_examples: int = Field(1024, ge=1, description="examples of the split used (the first ones)")

    def check(self, info, model, path):
        check_splits([self.split], info, f"{path}.split")

    def metric_names(self, info):
        return [f"pair_barrier/{self.split}"]

    @torch.no_grad()
    def measure(self, ctx: ProbeContext) -> dict[str, torch.Tensor]:
        first, second = pairs(ctx, "pair_barrier")
        x, targets = ctx.trainer.data.splits[self.split]
        x, targets = x[:, : self.max_examples], targets[:, : self.max_examples]
        params = ctx.params
        saved = [p.detach().clone() for p in params]
        losses = []
        try:
            for alpha in torch.linspace(0, 1, self.points).tolist():
                for p, original in zip(params, saved):
                    line = (1 - alpha) * original[first] + alpha * original[second]
                    p.data[first], p.data[second] = line, line
                outputs, _ = ctx.run(x)
                losses.append(example_losses(ctx.info, outputs, targets, ctx.trainer.recipe.loss).double().mean(1)[first])
        finally:
            for p, original in zip(params, saved):
                p.data.copy_(original)
        curve = torch.stack(losses)  # [points, S/2]
        alphas = torch.linspace(0, 1, self.points, dtype=torch.float64).unsqueeze(1)
        chord = (1 - alphas) * curve[0] + alphas * curve[-1]
        return {f"pair_barrier/{self.split}": both((curve - chord).max(0).values, len(ctx.trainer.seeds))}


@registry.probes.register("pair_cka")
class PairCKA(Probe):
    """Linear CKA of a site's activations between each pair's members."""

    site: str = Field("penultimate", description="a site of the model (`learnscope sites` lists them)")
    split: str = Field("test", description="the split the activations are read on")
    max_examples: int = Field(1024, ge=2, description="examples of the split used (the first ones)")

    def check(self, info, model, path):
        check_splits([self.split], info, f"{path}.split")
        model.check_sites([self.site], f"{path}.site")

    def needs(self, info):
        return Needs(sites={self.split: {self.site}}, site_examples={self.split: self.max_examples})

    def metric_names(self, info):
        return [f"pair_cka/{self.site}/{self.split}"]

    def measure(self, ctx: ProbeContext) -> dict[str, torch.Tensor]:
        first, second = pairs(ctx, "pair_cka")
        feats = ctx.features(self.split, self.site, self.max_examples)[0].double()
        return {f"pair_cka/{self.site}/{self.split}": both(linear_cka(feats[first], feats[second]),
                                                           len(ctx.trainer.seeds))}
