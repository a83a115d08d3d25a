"""Random features: a fixed random first layer, an activation, and a trained
linear readout (Rahimi & Recht's random-features model; the setting of
model-wise double descent, "Understanding the Role of Optimization in
Double Descent", Liu & Flanigan).

    features(x) = act(x P) / sqrt(width),  P [d_in, width], P_ij ~ N(0, 1 / d_in)
    output(x)   = features(x) W (+ b)

P is drawn per seed from its own generator (stream "random-features"), so
seed k's features never depend on its ensemble mates, and it is a buffer,
not a parameter: the optimizer, weight decay, gradient interventions and
weight probes see only the readout, and P never changes. Checkpoints hold
the parameters only; P is rebuilt from the seeds, the same bit for bit, on
resume and under `init_from` (same seed, same P). The 1/sqrt(width) keeps
the feature kernel, and so a stable learning rate, the same at every
width. `readout_init: zero` (the default) starts the readout at zero, so
that gradient descent on the squared loss goes to the minimum-norm
interpolant past the interpolation threshold, as the double-descent
analyses assume; `uniform` is PyTorch's default Linear init.

Sites: `projection` (x P, before the activation), `penultimate` (the
features) and `logits`. Vector inputs only (read flattened, as `mlp` does).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from pydantic import Field

from learnscope import registry
from learnscope.errors import SpecError
from learnscope.models import layers
from learnscope.models.base import EnsembleModel, Model, Sites
from learnscope.seeding import generator
from learnscope.tasks.base import TaskInfo

STREAM = "random-features"  # the generator stream of the fixed projection, apart from "init" (the readout)


@registry.models.register("random-features")
class RandomFeatures(Model):
    width: int = Field(256, ge=1, le=1_000_000, description="random features: units of the fixed first layer")
    activation: Literal["relu", "gelu", "tanh", "silu", "quadratic"] = "relu"
    readout_init: Literal["zero", "uniform"] = Field(
        "zero", description="zero: the readout starts at 0 (gradient descent then goes to the minimum-norm "
        "solution); uniform: PyTorch's default Linear init"
    )
    bias: bool = Field(False, description="a trained bias of the readout")

    def build(self, info: TaskInfo, seeds: Sequence[int]) -> EnsembleModel:
        if info.input_kind != "vector" or info.sequence:
            raise SpecError("model.name", "'random-features' reads vector inputs (gaussian-mixture, teacher-student, "
                            "digits, ...); this task's inputs are tokens: use 'mlp' (it embeds them)")
        net = RandomFeaturesNetwork(self, info, seeds)
        layers.initialize(net, seeds)
        if self.readout_init == "zero":
            with torch.no_grad():
                for param in net.head.parameters():  # weight, and bias if any
                    if not param.is_meta:
                        param.zero_()
        return net


def projection(seed: int, d_in: int, width: int) -> torch.Tensor:
    """One seed's fixed projection P [d_in, width], entries N(0, 1/d_in)."""
    return torch.randn(d_in, width, generator=generator(seed, STREAM), device="cpu") / math.sqrt(d_in)


class RandomFeaturesNetwork(EnsembleModel):
    projection: torch.Tensor

    def __init__(self, spec: RandomFeatures, info: TaskInfo, seeds: Sequence[int]):
        super().__init__()
        self.members = len(seeds)
        self.spec = spec
        d_in = math.prod(info.input_shape)
        fixed = torch.empty(self.members, d_in, spec.width)
        if not fixed.is_meta:  # the memory estimate builds on the meta device: shapes only
            for i, seed in enumerate(seeds):
                fixed[i] = projection(seed, d_in, spec.width)
        self.register_buffer("projection", fixed)
        self.head = layers.Linear(self.members, spec.width, info.output_dim, bias=spec.bias)
        self.act = layers.ACTIVATIONS[spec.activation]
        self.norm = 1 / math.sqrt(spec.width)

    def site_names(self) -> list[str]:
        return ["projection", "penultimate", "logits"]

    def features(self, x: torch.Tensor, sites: Sites | None = None) -> torch.Tensor:
        """act(x P) / sqrt(width) per seed: x [S, B, ...] -> [S, B, width]."""
        flat = x.flatten(2)
        if flat.shape[0] != self.projection.shape[0]:
            # a pass over a group of seeds (functional_call over their readout slices) cannot tell which
            # seeds' projections it needs; the ensemble's passes hold every seed unless a pass is large
            raise SpecError("recipe.microbatch", f"random-features runs all {self.projection.shape[0]} seeds in "
                            f"one pass, this pass holds {flat.shape[0]}: set a smaller recipe.microbatch")
        h = torch.bmm(flat, self.projection)
        if sites is not None:
            h = sites("projection", h)
        return self.act(h) * self.norm

    def forward(self, x: torch.Tensor, sites: Sites | None = None) -> torch.Tensor:
        return self.output(self.features(x, sites), sites)
