"""A mixture of isotropic Gaussians, one per class: the plain classifier
testbed, with optional label noise and class imbalance.

Class sizes are exact, not sampled: each split holds its classes in the
proportions the imbalance profile gives (largest-remainder rounding), so a
balanced mixture is balanced in every split, as neural-collapse studies
assume.

With label noise the train split is also offered as `train_clean` and
`train_noisy` (the corrupted examples), for memorization studies.
"""

from __future__ import annotations

import torch
from pydantic import Field, field_validator

from learnscope import registry
from learnscope.seeding import generator
from learnscope.tasks.base import Dataset, Task, TaskInfo


@registry.tasks.register("gaussian-mixture")
class GaussianMixture(Task):
    classes: int = Field(10, ge=2)
    dim: int = Field(32, ge=1)
    separation: float = Field(3.0, gt=0, description="distance of each class mean from the origin, in noise std")
    samples: int = Field(4096, ge=2, description="training examples")
    test_samples: int = Field(1024, ge=1)
    label_noise: float = Field(0.0, ge=0, le=1, description="fraction of training labels replaced by another class")
    imbalance: float = Field(1.0, ge=1, description="ratio of the largest class's frequency to the smallest's")

    @field_validator("samples")
    @classmethod
    def _enough_samples(cls, samples, info):
        classes = info.data.get("classes")
        if classes is not None and classes > samples:
            raise ValueError(f"must be at least classes ({classes})")
        return samples

    @field_validator("label_noise")
    @classmethod
    def _noise_leaves_both_splits(cls, label_noise, info):
        samples = info.data.get("samples")
        noisy = round(label_noise * samples) if samples is not None else None
        if label_noise > 0 and noisy is not None and not 0 < noisy < samples:
            raise ValueError(
                f"gives {noisy} noisy labels of {samples}; train_clean and train_noisy must both be non-empty"
            )
        return label_noise

    def info(self) -> TaskInfo:
        splits = ("train", "test") + (("train_clean", "train_noisy") if self.label_noise > 0 else ())
        return TaskInfo("vector", (self.dim,), self.classes, "cross_entropy", splits)

    def _class_probabilities(self) -> torch.Tensor:
        # geometric profile: class k is imbalance^(-k/(C-1)) times as frequent as class 0
        k = torch.arange(self.classes, dtype=torch.float64)
        weights = self.imbalance ** (-k / (self.classes - 1))
        return weights / weights.sum()

    @staticmethod
    def _exact_labels(probabilities: torch.Tensor, n: int, gen: torch.Generator) -> torch.Tensor:
        """n labels in random order with class counts as close to n * p as integers allow."""
        quota = probabilities * n
        counts = quota.floor().long()
        short = n - int(counts.sum())
        counts[torch.argsort(quota - counts, descending=True, stable=True)[:short]] += 1
        labels = torch.repeat_interleave(torch.arange(len(counts)), counts)
        return labels[torch.randperm(n, generator=gen)]

    def build(self, seed: int) -> Dataset:
        gen = generator(seed, "data")
        means = torch.randn(self.classes, self.dim, generator=gen)
        means = means / means.norm(dim=1, keepdim=True) * self.separation
        n = self.samples + self.test_samples
        probabilities = self._class_probabilities()
        labels = torch.cat([
            self._exact_labels(probabilities, self.samples, gen),
            self._exact_labels(probabilities, self.test_samples, gen),
        ])
        inputs = means[labels] + torch.randn(n, self.dim, generator=gen)
        train = torch.arange(self.samples)
        test = torch.arange(self.samples, n)
        splits = {"train": train, "test": test}
        if self.label_noise > 0:
            n_noisy = int(round(self.label_noise * self.samples))
            noisy = torch.randperm(self.samples, generator=gen)[:n_noisy].sort().values
            shift = torch.randint(1, self.classes, (n_noisy,), generator=gen)
            labels = labels.clone()
            labels[noisy] = (labels[noisy] + shift) % self.classes  # always a different class
            is_noisy = torch.zeros(self.samples, dtype=torch.bool)
            is_noisy[noisy] = True
            splits["train_clean"] = train[~is_noisy]
            splits["train_noisy"] = train[is_noisy]
        return Dataset(inputs.float(), labels, splits)
