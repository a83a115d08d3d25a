"""Streams of experiences for continual learning, built on any vector
classification task (`base`): its data cut or transformed into experiences
met one after another.

- `permuted-stream` (domain-incremental): every experience is the whole base
  task under its own fixed permutation of the input features (drawn per
  seed; the first experience unpermuted unless `permute_first`).
- `split-stream`: the classes split into `experiences` groups; experience e
  holds the examples of group e. `scenario: class` (class-incremental: one
  head over all classes) or `task` (task-incremental: one head per
  experience, the task id given: only the classes of an example's own
  experience compete for it).

Splits: `train/e` and `test/e` per experience, and `train` and `test`, all
experiences together (in experience order, so experience e's training
examples are one contiguous range of `train`).

The schedule says which experience each update trains on, as blocks of
equal length covering `recipe.steps`: `sequential` (each experience once, in
order), or `power-law` (after each new experience, `revisits` blocks each
revisit one experience met so far, with a chance proportional to (blocks
since it was last met)^-exponent, as in naturalistic environments). The
schedule is one environment for every seed (`order_seed`), so experiences
switch at the same steps across the ensemble.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from pydantic import Field, SerializeAsAny, field_validator, model_validator

from learnscope import registry
from learnscope.errors import SpecError
from learnscope.seeding import generator
from learnscope.spec import TaskSpec, resolve_component
from learnscope.tasks.base import Block, Dataset, Task, TaskInfo


class Stream(Task):
    base: SerializeAsAny[TaskSpec] = Field(
        default_factory=lambda: registry.tasks.get("gaussian-mixture")(),
        description="the vector classification task the experiences are made from",
    )
    experiences: int = Field(5, ge=1, le=1000)
    schedule: Literal["sequential", "power-law"] = "sequential"
    revisits: int = Field(2, ge=0, le=1000, description="power-law: blocks after each new experience that revisit one")
    exponent: float = Field(1.0, gt=0, description="power-law: revisit chance ∝ (blocks since last met)^-exponent")
    order_seed: int = Field(0, ge=0, description="seed of the power-law revisit order, one for every seed")

    @field_validator("base", mode="before")
    @classmethod
    def _resolve_base(cls, value):
        base = resolve_component(registry.tasks, TaskSpec, value, "task.base")
        if isinstance(base, Stream):
            raise SpecError("task.base", "must be an ordinary task, not another stream")
        info = base.info()
        if info.input_kind != "vector" or not info.is_classification:
            raise SpecError("task.base", f"must be a classification task with vector inputs; "
                            f"'{base.registry_name}' is {info.input_kind} {info.loss}")
        return base

    # ------------------------------------------------------------ schedule

    def block_order(self) -> list[int]:
        """The experience of every block, in order."""
        if self.schedule == "sequential":
            return list(range(self.experiences))
        gen = generator(self.order_seed, "stream", "revisits")
        order: list[int] = []
        last_met: dict[int, int] = {}
        for experience in range(self.experiences):
            order.append(experience)
            last_met[experience] = len(order)
            for _ in range(self.revisits):
                met = sorted(last_met)
                age = torch.tensor([len(order) + 1 - last_met[e] for e in met], dtype=torch.float64)
                chosen = met[int(torch.multinomial(age ** -self.exponent, 1, generator=gen))]
                order.append(chosen)
                last_met[chosen] = len(order)
        return order

    def blocks(self, steps: int) -> list[Block]:
        order = self.block_order()
        if steps < len(order):
            raise SpecError("recipe.steps", f"{steps} updates cannot cover the stream's {len(order)} blocks")
        per = steps // len(order)
        return [Block(i * per, steps if i == len(order) - 1 else (i + 1) * per, e) for i, e in enumerate(order)]

    # ------------------------------------------------------------ data

    def splits(self) -> tuple[str, ...]:
        per = [f"{kind}/{e}" for kind in ("train", "test") for e in range(self.experiences)]
        return ("train", "test", *per)

    def info(self) -> TaskInfo:
        base = self.base.info()
        return TaskInfo("vector", base.input_shape, base.output_dim, "cross_entropy", self.splits(),
                        experiences=self.experiences, class_groups=self.class_groups())

    def class_groups(self) -> tuple[tuple[int, ...], ...] | None:
        return None

    def experience(self, data: Dataset, seed: int, e: int) -> Dataset:
        """Experience e of one seed's base data, with its own train/test splits."""
        raise NotImplementedError

    def build(self, seed: int) -> Dataset:
        data = self.base.build(seed)
        parts = [self.experience(data, seed, e) for e in range(self.experiences)]
        offsets = np.cumsum([0] + [len(p.targets) for p in parts])
        splits = {f"{kind}/{e}": part.splits[kind] + int(offset)
                  for kind in ("train", "test") for e, (part, offset) in enumerate(zip(parts, offsets))}
        for kind in ("train", "test"):
            splits[kind] = torch.cat([splits[f"{kind}/{e}"] for e in range(self.experiences)])
        return Dataset(torch.cat([p.inputs for p in parts]), torch.cat([p.targets for p in parts]), splits)


@registry.tasks.register("permuted-stream")
class PermutedStream(Stream):
    permute_first: bool = Field(False, description="permute the first experience too (else it is the base task)")

    def experience(self, data: Dataset, seed: int, e: int) -> Dataset:
        features = data.inputs.shape[1]
        if e == 0 and not self.permute_first:
            order = torch.arange(features)
        else:
            order = torch.randperm(features, generator=generator(seed, "stream", "permutation", e))
        return Dataset(data.inputs[:, order], data.targets, data.splits)


@registry.tasks.register("split-stream")
class SplitStream(Stream):
    scenario: Literal["class", "task"] = Field(
        "class", description="class: one head over all classes; task: one head per experience, task id given")
    shuffle_classes: bool = Field(False, description="group the classes in an order drawn from order_seed")

    @model_validator(mode="after")
    def _enough_classes(self):
        classes = self.base.info().output_dim
        if self.experiences > classes:
            raise SpecError("task.experiences", f"{self.experiences} exceeds the base task's {classes} classes; "
                            f"at most {classes}")
        return self

    def groups(self) -> list[list[int]]:
        classes = self.base.info().output_dim
        order = (torch.randperm(classes, generator=generator(self.order_seed, "stream", "classes")).tolist()
                 if self.shuffle_classes else list(range(classes)))
        return [list(map(int, g)) for g in np.array_split(order, self.experiences)]

    def class_groups(self) -> tuple[tuple[int, ...], ...] | None:
        return tuple(tuple(sorted(g)) for g in self.groups()) if self.scenario == "task" else None

    def experience(self, data: Dataset, seed: int, e: int) -> Dataset:
        in_group = torch.isin(data.targets, torch.tensor(self.groups()[e]))
        index = in_group.nonzero().flatten()  # the experience's examples, in base order
        position = torch.full((len(data.targets),), -1, dtype=torch.long)
        position[index] = torch.arange(len(index))
        splits = {kind: position[data.splits[kind][in_group[data.splits[kind]]]] for kind in ("train", "test")}
        return Dataset(data.inputs[index], data.targets[index], splits)
