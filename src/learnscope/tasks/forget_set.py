"""Forget sets for machine unlearning, over any classification task (`base`).

An unlearning study trains an *original* model on `train`, a *retrain
oracle* on `retain` alone (`recipe.train_split: retain`, same seeds and
steps), and runs each unlearning method from the original on `forget`
(MUSE: Machine Unlearning Six-Way Evaluation for Language Models). This task
cuts the base task's training split into the two, per seed:

- `random`: a `fraction` of the base training examples, uniformly;
- `class`: every training example of class `forget_class` (class
  unlearning, as in "Class Machine Unlearning for Complex Data via Concepts
  Inference and Data Poisoning"). The base task must keep its class counts
  fixed across seeds (gaussian-mixture, digits and image-files do);
- `canaries`: `count` training examples given random wrong labels (uniform
  over the other classes) and trained on so: a memorization-heavy forget
  set, the easiest target for membership inference.

Splits:

- `train`: retain ∪ forget, what the original trains on;
- `retain`, `forget`: the two parts of `train`;
- `holdout`: non-members drawn like the forget set, never trained on, the
  reference of membership inference — `random`: as many base test examples
  as forget examples; `class`: the base test examples of `forget_class`;
  `canaries`: as many base test examples, copied with random wrong labels
  of their own (the originals stay in `test` with their true labels);
- `test`: utility — the base test split; for `class`, without
  `forget_class` (its test examples are `holdout`), so that utility is
  measured on the classes kept;
- with `requests: k > 1` (MUSE's sustainability: sequential unlearning
  requests), the forget set cut into k requests of near-equal size,
  `forget/r`, and `keep/r` = `train` minus requests 0..r, for r < k
  (`keep/{k-1}` is `retain`).

Every draw comes from generators derived from (seed, "forget-set", ...);
split sizes depend only on the parameters and the base task's split sizes,
never on the seed (seeds stack). Every split is in random order, so its
first m examples (a probe's `max_examples`) are a uniform subset.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import torch
from pydantic import Field, SerializeAsAny, field_validator, model_validator

from learnscope import registry
from learnscope.errors import SpecError
from learnscope.seeding import generator
from learnscope.spec import TaskSpec, resolve_component
from learnscope.tasks.base import Dataset, Task, TaskInfo


def wrong_labels(labels: torch.Tensor, classes: int, gen: torch.Generator) -> torch.Tensor:
    """Labels drawn uniformly among the classes other than each one's own."""
    return (labels + torch.randint(1, classes, labels.shape, generator=gen)) % classes


@registry.tasks.register("forget-set")
class ForgetSet(Task):
    base: SerializeAsAny[TaskSpec] = Field(
        default_factory=lambda: registry.tasks.get("gaussian-mixture")(),
        description="the classification task whose training examples are cut into retain and forget",
    )
    kind: Literal["random", "class", "canaries"] = "random"
    fraction: float = Field(0.1, gt=0, lt=1, description="random: share of the training examples forgotten")
    forget_class: int = Field(0, ge=0, description="class: the class forgotten")
    count: int = Field(100, ge=1, le=10_000_000, description="canaries: training examples given random wrong labels")
    requests: int = Field(1, ge=1, le=1000, description="the forget set cut into this many sequential requests")

    @field_validator("base", mode="before")
    @classmethod
    def _resolve_base(cls, value):
        base = resolve_component(registry.tasks, TaskSpec, value, "task.base")
        info = base.info()
        if not info.is_classification or info.experiences:
            what = "a stream of experiences" if info.experiences else f"{info.loss} regression"
            raise SpecError("task.base", f"must be an ordinary classification task; '{base.registry_name}' is {what}")
        missing = [s for s in ("train", "test") if s not in info.splits]
        if missing:
            raise SpecError("task.base", f"must have train and test splits; '{base.registry_name}' lacks {missing[0]}")
        return base

    @model_validator(mode="after")
    def _kind_fits_the_base(self):
        info = self.base.info()
        if self.kind != "random" and info.sequence:
            raise SpecError("task.kind", f"{self.kind} needs one label per example; '{self.base.registry_name}' labels "
                            f"every position of a sequence (valid: random)")
        if self.kind == "class" and self.forget_class >= info.output_dim:
            raise SpecError("task.forget_class", f"{self.forget_class} is not a class of the base task; valid: 0 to "
                            f"{info.output_dim - 1}")
        return self

    def splits(self) -> tuple[str, ...]:
        per_request = [f"{kind}/{r}" for kind in ("forget", "keep") for r in range(self.requests)]
        return ("train", "retain", "forget", "holdout", "test", *(per_request if self.requests > 1 else ()))

    def info(self) -> TaskInfo:
        return dataclasses.replace(self.base.info(), splits=self.splits())

    # ------------------------------------------------------------ data

    def build(self, seed: int) -> Dataset:
        data = self.base.build(seed)
        inputs, targets = data.inputs, data.targets
        train, test = data.splits["train"], data.splits["test"]
        gen = generator(seed, "forget-set", self.kind)

        def shuffled(index: torch.Tensor) -> torch.Tensor:
            return index[torch.randperm(len(index), generator=gen)]

        if self.kind == "class":
            self._check_class_counts(data, seed)
            member = targets[train] == self.forget_class
            forget, retain = shuffled(train[member]), shuffled(train[~member])
            in_class = targets[test] == self.forget_class
            holdout, test = shuffled(test[in_class]), test[~in_class]
        else:
            n = self._forget_size(len(train), len(test))
            order = shuffled(train)
            forget, retain = order[:n], order[n:]
            holdout = shuffled(test)[:n]
            if self.kind == "canaries":
                classes = self.base.info().output_dim
                targets = targets.clone()
                targets[forget] = wrong_labels(targets[forget], classes, gen)
                copies = torch.arange(len(inputs), len(inputs) + n)  # the holdout, relabeled as copies
                inputs = torch.cat([inputs, inputs[holdout]])
                targets = torch.cat([targets, wrong_labels(targets[holdout], classes, gen)])
                holdout = copies
        splits = {"train": shuffled(torch.cat([retain, forget])), "retain": retain, "forget": forget,
                  "holdout": holdout, "test": test}
        splits.update(self._requests(splits, shuffled))
        return Dataset(inputs, targets, splits)

    def _forget_size(self, n_train: int, n_test: int) -> int:
        if self.kind == "random":
            n = round(self.fraction * n_train)
            if not 0 < n < n_train:
                raise SpecError("task.fraction", f"gives {n} forget examples of {n_train}; retain and forget must "
                                f"both be non-empty")
            field = "task.fraction"
        else:
            n, field = self.count, "task.count"
            if n >= n_train:
                raise SpecError(field, f"{n} canaries leave no retain example of the {n_train} training examples; "
                                f"at most {n_train - 1}")
        if n > n_test:
            raise SpecError(field, f"gives {n} forget examples but the base task has {n_test} test examples to draw "
                            f"as many holdout examples from")
        return n

    def _check_class_counts(self, data: Dataset, seed: int) -> None:
        """Refuse a base task whose counts of `forget_class` change with the seed
        (the splits of an ensemble are stacked): compared with seed 0's."""
        def counts(d: Dataset) -> tuple[int, int]:
            return tuple(int((d.targets[d.splits[s]] == self.forget_class).sum()) for s in ("train", "test"))

        here = counts(data)
        if 0 in here:
            split = "training" if here[0] == 0 else "test"
            raise SpecError("task.forget_class", f"class {self.forget_class} has no {split} example in the base task")
        reference = here if seed == 0 else counts(self.base.build(0))
        if here != reference:
            raise SpecError("task.kind", f"class: class {self.forget_class} has {here[0]} training and {here[1]} test "
                            f"examples under seed {seed} but {reference[0]} and {reference[1]} under seed 0; the "
                            f"class kind needs a base task with class counts fixed across seeds (e.g. "
                            f"gaussian-mixture, digits, image-files)")

    def _requests(self, splits: dict[str, torch.Tensor], shuffled) -> dict[str, torch.Tensor]:
        """forget/r and keep/r for r < requests (when more than one)."""
        if self.requests == 1:
            return {}
        forget = splits["forget"]
        if self.requests > len(forget):
            raise SpecError("task.requests", f"{self.requests} requests of a forget set of {len(forget)} examples; at "
                            f"most {len(forget)}")
        parts = forget.tensor_split(self.requests)
        out = {}
        for r, part in enumerate(parts):
            out[f"forget/{r}"] = part
            out[f"keep/{r}"] = shuffled(torch.cat([splits["retain"], *parts[r + 1:]]))
        return out
