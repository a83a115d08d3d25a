"""Massive activations in the residual stream (Sun et al., "Massive
Activations in Large Language Models"; their emergence over training is the
subject of "Hidden Dynamics of Massive Activations in Transformer
Training"): a few scalars of a layer's hidden state, at fixed feature
dimensions, whose magnitude is orders of magnitude above the typical one
(Sun et al. call an activation massive above 100 and about 1000x the
median magnitude).

The measure follows Sun et al.'s code (locuslab/massive-activations,
`gpt-2/analyze.py`): per example (one sequence), the magnitudes |h| of a
block's output h [T, D] (here the site `resid.{layer}`, the residual stream
leaving block `layer`) over all positions and dimensions; the top-1 and the
median of them (the lower of the two middle values for an even count, as
`torch.median` gives), each averaged over the examples. Per layer, per seed:

- `massive_activations/top.{l}`: the mean top-1 magnitude;
- `massive_activations/median.{l}`: the mean median magnitude;
- `massive_activations/ratio.{l}`: top / median (the ratio of those means,
  the two curves Sun et al. plot); about 5 for 512 Gaussian values, 100s
  to 1000s where massive activations sit;
- `massive_activations/dim.{l}`: the feature dimension that holds an
  example's top-1 magnitude in the most examples (ties: the lowest), and
  `massive_activations/dim_share.{l}` the share of examples where it does:
  Sun et al. find massive activations at the same few dimensions across
  inputs, so a share near 1 says the largest one sits at a fixed dimension;
- `massive_activations/position.{l}`: likewise the position that holds it
  in the most examples (Sun et al.: the first token, or a delimiter).
`massive_activations/ratio` is the largest ratio over layers.
"""

from __future__ import annotations

import torch
from pydantic import Field, PrivateAttr

from learnscope import registry
from learnscope.errors import LearnscopeError, SpecError
from learnscope.probes.base import Needs, Probe, ProbeContext, check_splits, check_tensors
from learnscope.tasks.base import TaskInfo


def _mode(values: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row of values [S, N] (integers in 0..size-1): the most frequent value
    (ties: the lowest) and the share of the row it takes; [S] each."""
    counts = torch.zeros(values.shape[0], size, dtype=torch.float64, device=values.device)
    counts.scatter_add_(1, values, torch.ones_like(values, dtype=torch.float64))
    share, mode = counts.max(1)  # max returns the first (lowest) index among ties
    return mode, share / values.shape[1]


def massive_activations(hidden: torch.Tensor) -> dict[str, torch.Tensor]:
    """Sun et al.'s top-1 and median magnitude of hidden states [S, N, T, D]
    (seeds, examples, positions, features), per example over its T x D values,
    then averaged over the N examples: `top`, `median`, `ratio` (top / median),
    and where the examples' top-1 sits: `dim` and `position` (the most frequent,
    ties to the lowest), `dim_share` and `position_share` (their shares of the
    examples). Float64; [S] each."""
    check_tensors("massive_activations", {"hidden": (hidden, "[S, N, T, D]", "floating")})
    S, N, T, D = hidden.shape
    if N == 0 or T * D == 0:
        raise LearnscopeError(f"massive_activations: hidden states hold no values (shape {tuple(hidden.shape)})")
    magnitude = hidden.double().abs().reshape(S, N, T * D)
    top, where = magnitude.max(-1)  # the first flat index among ties
    median = magnitude.median(-1).values  # the lower middle value for an even count
    dim, dim_share = _mode(where % D, D)
    position, position_share = _mode(where // D, T)
    top, median = top.mean(1), median.mean(1)
    return {"top": top, "median": median, "ratio": top / median, "dim": dim.double(), "dim_share": dim_share,
            "position": position.double(), "position_share": position_share}


def residual_layers(sites: list[str], path: str) -> int:
    """How many blocks write a residual stream site resid.0, resid.1, ..."""
    layers = 0
    names = set(sites)
    while f"resid.{layers}" in names:
        layers += 1
    if not layers:
        raise SpecError(path, "massive_activations reads the residual stream (sites resid.0, resid.1, ...); this "
                        "model has none (the transformer has them)")
    return layers


PER_LAYER = ("ratio", "top", "median", "dim", "dim_share", "position", "position_share")


@registry.probes.register("massive_activations")
class MassiveActivations(Probe):
    """Per layer, the largest activation magnitude of the residual stream over
    the median one (Sun et al.'s top-1 / median), and the feature dimension and
    position that hold the largest, on a split's first examples."""

    split: str = Field("test", description="the split whose examples are read")
    max_examples: int = Field(64, ge=1, description="examples of the split read (the first ones)")
    _layers: int | None = PrivateAttr(None)  # from the model at check

    def check(self, info: TaskInfo, model, path: str) -> None:
        check_splits([self.split], info, f"{path}.split")
        self._layers = residual_layers(model.site_names(), path)

    def layers(self) -> int:
        if self._layers is None:
            raise LearnscopeError("massive_activations: metric names come from the model's layers, known once the "
                                  "probe is checked against the model (Trainer does)")
        return self._layers

    def needs(self, info: TaskInfo) -> Needs:
        return Needs(sites={self.split: {f"resid.{i}" for i in range(self.layers())}},
                     site_examples={self.split: self.max_examples})

    def metric_names(self, info: TaskInfo) -> list[str]:
        per_layer = [f"massive_activations/{kind}.{i}" for i in range(self.layers()) for kind in PER_LAYER]
        return [*per_layer, "massive_activations/ratio"]

    def measure(self, ctx: ProbeContext) -> dict[str, torch.Tensor]:
        metrics: dict[str, torch.Tensor] = {}
        for i in range(self.layers()):
            hidden = ctx.activations(self.split, f"resid.{i}", self.max_examples)  # [S, m, T, D]
            for kind, value in massive_activations(hidden).items():
                metrics[f"massive_activations/{kind}.{i}"] = value
        metrics["massive_activations/ratio"] = torch.stack(
            [metrics[f"massive_activations/ratio.{i}"] for i in range(self.layers())], 1).amax(1)
        return metrics
