"""A self-consuming loop: a run trains on labels that earlier generations'
models produced, in the analytically tractable framework of the
model-collapse papers ("Model Collapse Demystified: The Case of
Regression", Dohmatob et al. 2024, and its extension to accumulating data
in "Is Model Collapse Inevitable? Breaking the Curse of Recursion by
Accumulating Real and Synthetic Data", Gerstgrasser et al. 2024).

Generation 1 is fit to real data (X, Y₁ = X w* + E₁), an ordinary run.
Generation g > 1 is fit to labels of the earlier models on the same inputs
X (the source's fixed design: no input is resampled), each with fresh
noise: Y_j = X ŵ_{j−1} + E_j, E_j ~ σ · N(0, 1) drawn from the generator of
(seed, "self-consume", j − 1), so a seed's labels are the same in any
ensemble, after a resume, and in both modes (replace and accumulate share
them: common random numbers).

- `replace`: the run reads one earlier run (`sources: [previous]`) and is
  generation `generation + 1`; every example of the training split is
  relabeled Y = X ŵ_prev + E_generation.
- `accumulate`: the run reads every earlier generation in order
  (`sources: [gen 1, gen 2, ..., gen g−1]`, so it is generation g =
  len(sources) + 1): the training split must hold g blocks of the same T
  inputs (`linear-regression` with `copies: g`); the first keeps the real
  labels, block j (1 ≤ j < g) becomes sources[j − 1]'s labels plus E_j.
  Least squares on [X; ...; X] is the source's accumulated fit.

The split is rewritten in place at the run's start (`on_start`), from the
task's real data and the read models alone, so a resumed run (which builds
the task again and reads the same runs) trains on the same labels. The read
models may be of any architecture that reads the task's inputs and has its
outputs (each built from its run's model spec); regression tasks only: a
label is a model's output plus Gaussian noise.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, model_validator

from learnscope import registry
from learnscope.errors import SpecError
from learnscope.seeding import generator
from learnscope.spec import Experiment, RunReference
from learnscope.train.hooks import Intervention, InterventionState
from learnscope.train.trainer import frozen_copy

NOISE_STREAM = "self-consume"


@registry.interventions.register("self-consume")
class SelfConsume(Intervention):
    sources: list[str] = Field(min_length=1, max_length=1000, description="the earlier generations' runs (run ids "
                               "or '@ARM'): replace, the previous one; accumulate, every earlier one, oldest first")
    mode: Literal["replace", "accumulate"] = Field("replace", description="replace: train on the previous "
                                                   "generation's labels alone; accumulate: on the real data and "
                                                   "every earlier generation's labels")
    noise: float = Field(1.0, ge=0, description="σ: std of the Gaussian noise added to every synthetic label")
    generation: int | None = Field(None, ge=1, description="replace: the previous generation's number (1: the "
                                   "run on real data); it names the labels' noise stream. accumulate: "
                                   "len(sources), its default")

    @model_validator(mode="after")
    def _sources_fit_the_mode(self):
        if self.mode == "replace":
            if len(self.sources) != 1:
                raise ValueError(f"mode replace reads the previous generation alone; sources has {len(self.sources)}")
            if self.generation is None:
                raise ValueError("mode replace needs `generation`, the previous generation's number (1: the run "
                                 "on real data), which names its labels' noise")
        elif self.generation is not None and self.generation != len(self.sources):
            raise ValueError(f"mode accumulate reads every earlier generation: generation is len(sources) = "
                             f"{len(self.sources)}, not {self.generation}")
        return self

    def runs_read(self) -> dict[str, str]:
        return {f"sources[{j}]": source for j, source in enumerate(self.sources)}

    def build(self, trainer) -> InterventionState:
        path = self.spec_path(trainer)
        if trainer.info.is_classification:
            raise SpecError(path, f"self-consume labels with a model's outputs plus Gaussian noise: a regression "
                            f"task; task '{trainer.experiment.task.registry_name}' is classification")
        if trainer.blocks:
            raise SpecError(path, "self-consume rewrites one training split; a stream of experiences has several")
        blocks = len(self.sources) + 1 if self.mode == "accumulate" else 1
        n = trainer.train_y.shape[1]
        if n % blocks:
            raise SpecError(path, f"mode accumulate with {len(self.sources)} earlier generations needs a training "
                            f"split of {blocks} copies of the real examples (linear-regression's copies: {blocks}); "
                            f"it has {n} examples")
        return SelfConsumeState(self, blocks)


class SelfConsumeState(InterventionState):
    def __init__(self, spec: SelfConsume, blocks: int):
        self.spec = spec
        self.blocks = blocks
        self.parameter_copies = len(spec.sources)  # the read models' parameters
        self.models: list[torch.nn.Module | None] = [None] * len(spec.sources)

    def read_run(self, trainer, reference: RunReference, experiment: Experiment, tensors: dict[str, torch.Tensor],
                 seeds: list[int], source: str) -> None:
        index = int(reference.field.removeprefix("sources[").removesuffix("]"))
        self.models[index] = frozen_copy(trainer, experiment, tensors, seeds, source, reference.path)

    @torch.no_grad()
    def on_start(self, trainer) -> None:
        spec = self.spec
        missing = [j for j, m in enumerate(self.models) if m is None]
        if missing:
            raise SpecError("interventions", f"self-consume's source '{spec.sources[missing[0]]}' was not loaded: "
                            "train through learnscope's runner (it reads the earlier generations from the store)")
        x, y = trainer.train_x, trainer.train_y
        size = y.shape[1] // self.blocks
        real = x[:, :size]
        if any(not torch.equal(x[:, b * size : (b + 1) * size], real) for b in range(1, self.blocks)):
            raise SpecError("interventions", f"mode accumulate relabels the real inputs once per generation: the "
                            f"training split must be {self.blocks} copies of the same {size} examples "
                            f"(linear-regression's copies: {self.blocks})")
        if spec.mode == "replace":
            assert spec.generation is not None  # the validator requires it
            labeled = [(0, self.models[0], spec.generation)]
        else:
            labeled = [(j + 1, model, j + 1) for j, model in enumerate(self.models)]
        for block, model, stream in labeled:
            assert model is not None  # all loaded, checked above
            noise = torch.stack([torch.randn(size, *y.shape[2:], generator=generator(seed, NOISE_STREAM, stream))
                                 for seed in trainer.seeds]).to(y)
            y[:, block * size : (block + 1) * size] = model(real) + spec.noise * noise
