"""Linear regression with a fixed design: x ~ N(0, I_d), y = x · w* + σ ε,
ε ~ N(0, 1), the teacher w* ~ N(0, I_d / d) (unit signal variance); the
setting of the model-collapse analyses ("Model Collapse Demystified: The
Case of Regression", Dohmatob et al. 2024; "Is Model Collapse Inevitable?",
Gerstgrasser et al. 2024).

`train` holds the T = `samples` training examples; with `copies` k it holds
them k times over (the same inputs and labels, in k consecutive blocks):
the room a self-consuming loop that accumulates its generations writes
into (`self-consume`, mode accumulate), each block relabeled on the same
inputs, as the source's accumulated design [X; X; ...; X]. The test labels
are clean (x · w*, no noise), so the test loss (mean squared error) is the
excess error E[(x · (ŵ − w*))²] = ‖ŵ − w*‖², the irreducible σ² left out.
Every draw (w*, the training inputs and noise, the test inputs, in that
order) comes from the seed's generator, and none depends on `copies`.
"""

from __future__ import annotations

import math

import torch
from pydantic import Field

from learnscope import registry
from learnscope.seeding import generator
from learnscope.tasks.base import Dataset, Task, TaskInfo


@registry.tasks.register("linear-regression")
class LinearRegression(Task):
    dim: int = Field(10, ge=1, description="d: the input dimension")
    samples: int = Field(40, ge=1, description="T: training examples")
    test_samples: int = Field(4096, ge=1, description="test examples (clean labels)")
    noise: float = Field(1.0, ge=0, description="σ: std of the Gaussian noise on training labels")
    copies: int = Field(1, ge=1, le=10_000, description="the training split holds its T examples this many times "
                        "over (room for a self-consuming loop's accumulated generations)")

    def info(self) -> TaskInfo:
        return TaskInfo("vector", (self.dim,), 1, "mse", ("train", "test"))

    def build(self, seed: int) -> Dataset:
        gen = generator(seed, "data")
        w = torch.randn(self.dim, generator=gen, dtype=torch.float64) / math.sqrt(self.dim)
        x_train = torch.randn(self.samples, self.dim, generator=gen, dtype=torch.float64)
        noise = torch.randn(self.samples, generator=gen, dtype=torch.float64) * self.noise
        x_test = torch.randn(self.test_samples, self.dim, generator=gen, dtype=torch.float64)
        x = torch.cat([x_train, x_test])
        y = x @ w
        y[: self.samples] += noise  # the test labels stay clean
        n = self.samples + self.test_samples
        train = torch.arange(self.samples).repeat(self.copies)
        return Dataset(x.float(), y.float().unsqueeze(1), {"train": train, "test": torch.arange(self.samples, n)})
