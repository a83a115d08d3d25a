"""Curated self-consumption: a run trains on samples of an earlier
generation's model that a reward-driven choice kept ("Self-Consuming
Generative Models with Curated Data Provably Optimize Human Preferences",
Ferbach et al. 2024).

For each example i of the training split, K candidates are drawn from the
read model's distribution on the example's input (its softmax output),
c₁..c_K i.i.d. ~ p(· | xᵢ), and one of them is kept with probability
exp(r(c_k)) / Σⱼ exp(r(c_j)): the Bradley–Terry (softmax) choice of a
user who prefers high reward, r the task's item rewards (`categorical`'s
`rewards()`). The kept item becomes the example's label. With
`real_fraction` λ the first round(λ · N) examples keep their real labels
(the task's draws from the ground truth): the source's mixture of real and
curated data. Every example is drawn either way, so chains with other λ
share their curated draws (common random numbers).

With `mode: accumulate` a generation trains on the real data and every
earlier generation's samples, as `self-consume`'s accumulate does for
regression ("Is Model Collapse Inevitable? Breaking the Curse of Recursion
by Accumulating Real and Synthetic Data", Gerstgrasser et al. 2024): the
run of generation g reads `earlier` (the g − 1 generations before
`source`, oldest first, the first the run on real data) and `source`; its
training split must hold g + 1 blocks of the N real draws (`categorical`'s
`copies: g + 1`). Block 0 keeps the real labels; block j (1 ≤ j ≤ g)
becomes the draws of the j-th read model (earlier..., then source) from
the stream of generation j, so block j holds exactly the labels that
generation j's run drew (the chain's data accumulate, none is redrawn
differently), and a replace chain's generation j shares its uniforms.
`real_fraction` is replace's alone (accumulate's real share is 1/(g + 1)).

Both draws are inverse-CDF lookups of float64 uniforms from the generator
of (seed, "curate", generation): for each example, K uniforms pick the
candidates, then one more picks the kept one. A seed's labels are the same
in any ensemble and after a resume (the split is rewritten at the run's
start from the task's real data and the read model alone).
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, model_validator

from learnscope import registry
from learnscope.errors import SpecError
from learnscope.seeding import generator
from learnscope.spec import Experiment, RunReference
from learnscope.tasks.categorical import Categorical
from learnscope.train.hooks import Intervention, InterventionState
from learnscope.train.trainer import frozen_copy

STREAM = "curate"


def inverse_cdf(probabilities: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """Indices drawn from probabilities [..., M] (rows summing to 1) by uniforms [..., k]: the first index whose
    cumulative probability exceeds the uniform (clamped to the last, against rounding)."""
    cumulative = probabilities.cumsum(-1)
    index = torch.searchsorted(cumulative.contiguous(), uniforms.contiguous(), right=True)
    return index.clamp_(max=probabilities.shape[-1] - 1)


def curate_labels(probabilities: torch.Tensor, rewards: torch.Tensor, candidates: int,
                  gen: torch.Generator) -> torch.Tensor:
    """One seed's curated labels [N] from its model's distributions [N, M] (float64): K candidates per example,
    one kept with probability ∝ exp(reward)."""
    n = probabilities.shape[0]
    drawn = inverse_cdf(probabilities, torch.rand(n, candidates, generator=gen, dtype=torch.float64))  # [N, K]
    preference = torch.softmax(rewards[drawn], -1)  # [N, K]
    kept = inverse_cdf(preference, torch.rand(n, 1, generator=gen, dtype=torch.float64))  # [N, 1]
    return drawn.gather(1, kept)[:, 0]


@registry.interventions.register("curate")
class Curate(Intervention):
    source: str = Field(description="the previous generation's run (a run id or '@ARM'), whose model generates")
    candidates: int = Field(4, ge=1, le=10_000, description="K: candidates drawn per example, of which one is kept")
    real_fraction: float = Field(0.0, ge=0, le=1, description="λ: the share of the training split that keeps its "
                                 "real labels (the first round(λ N) examples)")
    generation: int = Field(ge=1, description="this run's generation (1: it reads the model fit to real data); it "
                            "names the draws' stream")
    mode: Literal["replace", "accumulate"] = Field("replace", description="replace: train on the source's samples "
                                                   "alone; accumulate: on the real data and every earlier "
                                                   "generation's samples")
    earlier: list[str] = Field(default_factory=list, max_length=1000, description="accumulate: the generations before "
                               "`source`, oldest first (the first the run on real data): generation - 1 runs")

    @model_validator(mode="after")
    def _earlier_fits_the_mode(self):
        if self.mode == "replace" and self.earlier:
            raise ValueError("mode replace reads the previous generation alone (`source`); `earlier` is accumulate's")
        if self.mode == "accumulate":
            if len(self.earlier) != self.generation - 1:
                raise ValueError(f"mode accumulate reads every earlier generation: generation {self.generation} "
                                 f"needs {self.generation - 1} runs in `earlier`, not {len(self.earlier)}")
            if self.real_fraction:
                raise ValueError("real_fraction is mode replace's; accumulate keeps the real draws as its first block")
        return self

    def runs_read(self) -> dict[str, str]:
        return {"source": self.source, **{f"earlier[{j}]": run for j, run in enumerate(self.earlier)}}

    def build(self, trainer) -> InterventionState:
        path = self.spec_path(trainer)
        task = trainer.experiment.task
        if not isinstance(task, Categorical):
            raise SpecError(path, f"curate keeps candidates by the items' rewards of a 'categorical' task; "
                            f"task '{task.registry_name}' has none")
        if trainer.blocks:
            raise SpecError(path, "curate rewrites one training split; a stream of experiences has several")
        blocks = self.generation + 1 if self.mode == "accumulate" else 1
        if blocks > 1 and task.copies != blocks:
            raise SpecError(path, f"mode accumulate at generation {self.generation} needs a training split of "
                            f"{blocks} copies of the real draws (categorical's copies: {blocks}); it has {task.copies}")
        return CurateState(self, task.rewards(), blocks)


class CurateState(InterventionState):
    def __init__(self, spec: Curate, rewards: torch.Tensor, blocks: int):
        self.spec = spec
        self.rewards = rewards
        self.blocks = blocks
        self.parameter_copies = 1 + len(spec.earlier)  # the read models' parameters
        self.models: list[torch.nn.Module | None] = [None] * (1 + len(spec.earlier))  # earlier..., then source

    def read_run(self, trainer, reference: RunReference, experiment: Experiment, tensors: dict[str, torch.Tensor],
                 seeds: list[int], source: str) -> None:
        index = -1 if reference.field == "source" else int(reference.field.removeprefix("earlier[").removesuffix("]"))
        self.models[index] = frozen_copy(trainer, experiment, tensors, seeds, source, reference.path)

    @torch.no_grad()
    def on_start(self, trainer) -> None:
        spec = self.spec
        if any(model is None for model in self.models):
            raise SpecError("interventions", f"curate's source '{spec.source}' was not loaded: train through "
                            "learnscope's runner (it reads the previous generation from the store)")
        x, y = trainer.train_x, trainer.train_y
        size = y.shape[1] // self.blocks
        if spec.mode == "replace":  # (block, model, stream, examples kept real)
            labeled = [(0, self.models[-1], spec.generation, round(spec.real_fraction * size))]
        else:
            labeled = [(j + 1, model, j + 1, 0) for j, model in enumerate(self.models)]
        for block, model, stream, real in labeled:
            assert model is not None  # all loaded, checked above
            probabilities = torch.softmax(model(x[:, :size]).double(), -1).cpu()  # [S, N, M]
            for member, seed in enumerate(trainer.seeds):
                labels = curate_labels(probabilities[member], self.rewards, spec.candidates,
                                       generator(seed, STREAM, stream))
                y[member, block * size + real : (block + 1) * size] = labels[real:].to(y)
