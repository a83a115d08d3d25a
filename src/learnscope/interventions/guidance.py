"""Representational guidance: a target network trained on its task while
its sites are aligned, by centered kernel alignment, to the sites of a
frozen guide network of another architecture ("Training the Untrainable:
Introducing Inductive Bias via Representational Alignment", Subramaniam et
al. 2024; read in vsubramaniam851/untrainable-networks, `rep_sim/`).

`guidance` reads the guide from a run's last checkpoint (`guide`: a run id,
or "@ARM" for an arm of the same phenomenon; a run of 0 updates is an
untrained guide, which carries the guide's architectural prior alone). On
every update it adds to the task loss

    weight · Σ over the aligned pairs (1 − CKA(target site, guide site)),

with CKA the linear CKA of the batch's activations, each flattened per
example: HSIC(X, Y) = Σ (H X Xᵀ H) ∘ (H Y Yᵀ H), H the centering matrix,
CKA = HSIC(X, Y) / √(HSIC(X, X) · HSIC(Y, Y)), as the source computes it.
The guide runs on the same inputs without gradients; its sites are
`guide_sites`, mapped onto the target's `sites` as the source maps layers:
guide site i guides target site round(i · (n − 1) / (m − 1)) of the n
target sites (the first to the first, the last to the last). CKA is a
measure of the whole batch, so updates use whole batches.
"""

from __future__ import annotations

import torch
from pydantic import Field, model_validator
from torch.func import functional_call

from learnscope import registry
from learnscope.errors import SpecError
from learnscope.models.base import Edit, Sites
from learnscope.probes.pairs import linear_cka
from learnscope.spec import Experiment, RunReference
from learnscope.train.hooks import Intervention, InterventionState
from learnscope.train.trainer import frozen_copy


def guided_pairs(sites: list[str], guide_sites: list[str]) -> list[tuple[str, str]]:
    """(target site, guide site) pairs: guide site i guides target site round(i · (n − 1) / (m − 1))."""
    step = (len(sites) - 1) / (len(guide_sites) - 1) if len(guide_sites) > 1 else 1
    return [(sites[min(round(i * step), len(sites) - 1)], guide) for i, guide in enumerate(guide_sites)]


@registry.interventions.register("guidance")
class Guidance(Intervention):
    guide: str = Field(min_length=1, description="the run whose last checkpoint is the guide: a run id, or '@ARM' "
                       "for an arm of the same phenomenon; a run of 0 updates is an untrained guide")
    sites: list[str] = Field(min_length=1, description="the target's sites that are guided, in order")
    guide_sites: list[str] = Field(min_length=1, description="the guide's sites, in order, mapped onto `sites`")
    weight: float = Field(1.0, gt=0, description="weight of the summed (1 - CKA) terms against the task loss")

    @model_validator(mode="after")
    def _one_target_per_guide_site(self):
        if len(self.guide_sites) > len(self.sites):
            raise ValueError(f"{len(self.guide_sites)} guide_sites for {len(self.sites)} sites: each guide site "
                             f"guides its own target site; list at most {len(self.sites)}")
        return self

    def runs_read(self) -> dict[str, str]:
        return {"guide": self.guide}

    def build(self, trainer) -> InterventionState:
        trainer.model.check_sites(self.sites, f"{self.spec_path(trainer)}.sites")
        return GuidanceState(self, self.spec_path(trainer))


class GuidanceState(InterventionState):
    whole_batches = True  # CKA compares the batch's examples with one another
    parameter_copies = 1  # the guide's parameters

    def __init__(self, spec: Guidance, path: str):
        self.spec = spec
        self.path = path
        self.pairs = guided_pairs(spec.sites, spec.guide_sites)
        self.guide: torch.nn.Module | None = None
        self.guide_params: dict[str, torch.Tensor] = {}
        self.captured: dict[str, torch.Tensor] = {}

    def read_run(self, trainer, reference: RunReference, experiment: Experiment, tensors: dict[str, torch.Tensor],
                 seeds: list[int], source: str) -> None:
        guide = frozen_copy(trainer, experiment, tensors, seeds, source, reference.path)
        guide.check_sites(self.spec.guide_sites, f"{self.path}.guide_sites")
        self.guide = guide
        self.guide_params = {name: p.detach() for name, p in guide.named_parameters()}

    def site_edits(self, trainer, step: int, members: slice, examples: slice) -> dict[str, Edit]:
        if not trainer.model.training:  # probes measure the model, not the alignment
            return {}
        self.captured = {}

        def capture(site: str) -> Edit:
            def keep(value: torch.Tensor) -> torch.Tensor:
                self.captured[site] = value
                return value
            return keep

        return {site: capture(site) for site, _ in self.pairs}

    def loss(self, trainer, inputs: torch.Tensor, outputs: torch.Tensor, targets: torch.Tensor,
             members: slice) -> torch.Tensor | None:
        if self.guide is None:
            raise SpecError(f"{self.path}.guide", f"the guide '{self.spec.guide}' was not loaded: train through "
                            "learnscope's runner (it reads the guide's run from the store)")
        sites = Sites(read=self.spec.guide_sites)
        with torch.no_grad():
            functional_call(self.guide, {n: p[members] for n, p in self.guide_params.items()}, (inputs, sites))
        distance = sum(1 - linear_cka(self.captured[target], sites.acts[guide]) for target, guide in self.pairs)
        return self.spec.weight * distance
