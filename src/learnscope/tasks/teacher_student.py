"""Regression on a known target: a random two-layer teacher network, or a
single-index polynomial y = He_k(beta . x) / sqrt(k!) (a probabilists'
Hermite polynomial, unit variance under Gaussian inputs). The setting of the
lazy-versus-rich studies."""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
from pydantic import Field

from learnscope import registry
from learnscope.seeding import generator
from learnscope.tasks.base import Dataset, Task, TaskInfo


@registry.tasks.register("teacher-student")
class TeacherStudent(Task):
    teacher: Literal["mlp", "polynomial"] = "mlp"
    input_dim: int = Field(16, ge=1)
    width: int = Field(8, ge=1, description="hidden units of the teacher network")
    degree: int = Field(3, ge=1, le=12, description="Hermite degree of the polynomial target")
    samples: int = Field(1024, ge=2)
    test_samples: int = Field(1024, ge=1)
    noise: float = Field(0.0, ge=0, description="std of Gaussian noise on training targets")

    def info(self) -> TaskInfo:
        return TaskInfo("vector", (self.input_dim,), 1, "mse", ("train", "test"))

    def build(self, seed: int) -> Dataset:
        gen = generator(seed, "data")
        n = self.samples + self.test_samples
        x = torch.randn(n, self.input_dim, generator=gen, dtype=torch.float64)
        if self.teacher == "mlp":
            w = torch.randn(self.input_dim, self.width, generator=gen, dtype=torch.float64) / math.sqrt(self.input_dim)
            a = torch.randn(self.width, generator=gen, dtype=torch.float64)
            y = torch.relu(x @ w) @ a / math.sqrt(self.width)
            y = (y - y.mean()) / y.std()
        else:
            beta = torch.randn(self.input_dim, generator=gen, dtype=torch.float64)
            z = (x @ (beta / beta.norm())).numpy()
            coef = np.zeros(self.degree + 1)
            coef[-1] = 1.0
            y = torch.from_numpy(np.polynomial.hermite_e.hermeval(z, coef) / math.sqrt(math.factorial(self.degree)))
        noise = torch.randn(n, generator=gen, dtype=torch.float64) * self.noise
        noise[self.samples :] = 0  # the test targets stay clean
        y = (y + noise).float().unsqueeze(1)
        return Dataset(x.float(), y, {"train": torch.arange(self.samples), "test": torch.arange(self.samples, n)})
