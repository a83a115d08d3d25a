"""scikit-learn's 8×8 handwritten digits: 1797 real images of 10 classes,
bundled inside scikit-learn (no download), small enough for seed ensembles.

Inputs are the 64 pixel intensities (integers 0..16) as vectors, scaled by
`scale`:
- `unit` (default): divided by 16, into [0, 1] — the same inputs for every
  seed, and the convention of `image-files` (pixels / 255);
- `standard`: each feature centred and divided by its standard deviation
  (ddof 0) over the seed's own train split, as sklearn's `StandardScaler`
  fitted on the train split; features constant on it (the blank border
  pixels) are only centred.

Example i of a seed's data is example i of `load_digits()`; the splits are
indices into that order. The train/test partition is drawn per seed and
stratified with exact counts: round(1797 · (1 − test_fraction)) training
examples, shared among the classes in proportion to their sizes by largest
remainder (`sampling.class_quota`). Every seed has the same per-class counts;
only which examples they are differs.
"""

from __future__ import annotations

import functools
from typing import Literal

import torch
from pydantic import Field, field_validator

from learnscope import registry
from learnscope.seeding import generator
from learnscope.tasks.base import Dataset, Task, TaskInfo
from learnscope.tasks.sampling import stratified_choice

EXAMPLES = 1797  # len(load_digits().target): validation needs it without importing scikit-learn


@functools.cache
def load() -> tuple[torch.Tensor, torch.Tensor]:
    """sklearn's pixels (float64, 0..16) and labels, read once per process.
    Shared by every seed: never modified in place."""
    from sklearn.datasets import load_digits  # here: importing scikit-learn takes about a second

    digits = load_digits()
    return torch.from_numpy(digits.data), torch.from_numpy(digits.target).long()


def train_size(test_fraction: float, examples: int = EXAMPLES) -> int:
    return round(examples * (1 - test_fraction))


@registry.tasks.register("digits")
class Digits(Task):
    test_fraction: float = Field(0.25, gt=0, lt=1, description="share of the 1797 examples held out for test")
    scale: Literal["unit", "standard"] = Field(
        "unit", description="unit: pixels / 16 into [0, 1]; standard: per feature, mean 0 and std 1 on the train split"
    )

    @field_validator("test_fraction")
    @classmethod
    def _both_splits_non_empty(cls, test_fraction):
        n_train = train_size(test_fraction)
        if not 0 < n_train < EXAMPLES:
            raise ValueError(f"gives {n_train} training examples of {EXAMPLES}; both splits must be non-empty")
        return test_fraction

    def info(self) -> TaskInfo:
        return TaskInfo("vector", (64,), 10, "cross_entropy", ("train", "test"))

    def build(self, seed: int) -> Dataset:
        pixels, labels = load()
        n_train = train_size(self.test_fraction, len(labels))
        train, test = stratified_choice(labels, n_train, generator(seed, "data", "split"))
        if self.scale == "unit":
            inputs = pixels / 16
        else:
            mean, std = pixels[train].mean(0), pixels[train].std(0, correction=0)
            inputs = (pixels - mean) / torch.where(std > 0, std, 1.0)
        return Dataset(inputs.float(), labels, {"train": train, "test": test})
