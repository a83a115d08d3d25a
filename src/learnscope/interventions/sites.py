"""Interventions that write the model's sites: ablate units or heads, or
patch in the activation a site had on other examples, per seed, on a step
schedule. Causal claims about what a component does for the learned
function (and for how it is learned) need these: a probe only reads.

Both act through the sites a model passes its activations through
(models.base.Sites): before every forward pass the trainer asks them for
their edits, in training (so the loss trains the edited model) and in the
probes' passes (so the probes measure it). An edit is active at the steps
`start` <= step < `stop` (a probe at step t sees the edits of update t) and
for the `seeds` listed (every seed by default; seeds listed that the run
does not train are ignored, so that an ensemble run equals its single
runs). It replaces, on the active seeds, the whole site, or the `units`
(indices along its last axis: an MLP's hidden units, a residual stream's
dimensions), or the `heads` (along the head axis of a head-shaped site:
the transformer's `q`, `k`, `v`, `attn` and `head_out`). `learnscope sites`
lists a model's sites with their shapes.

- `ablate`: `mode: zero` sets the selection to 0; `mode: mean` to its mean
  over examples, per seed and per position: over the `reference` split's
  examples if given (recorded on the unedited model at that step), else
  over the forward pass's own examples (the update's whole batch; at probe
  time the probed examples of the split).
- `patch`: the selection takes the activation the site had, at the same
  positions, on the `source` split's examples, recorded on the unedited
  model at that step: the pass's example j (its position in the update's
  batch, or in the probed split) takes source example j mod n, n the source
  split's size. Probing the source split itself, the patch changes nothing.

The replacement values are constants: no gradient flows through them (an
ablated unit or a patched head takes no part in the update, upstream of the
site only what else reads it is trained). Recording a `reference` or
`source` costs one forward pass without gradients over that split per step
while the edit is active.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Literal

import torch
from pydantic import Field, field_validator

from learnscope import registry
from learnscope.errors import SpecError, one_of
from learnscope.models.base import Edit, Sites, selected
from learnscope.models.trainer_view import TrainerView
from learnscope.probes.base import CHUNK
from learnscope.train.hooks import Intervention, InterventionState

# what replaces the selection, from the site's activation of the pass [s, b, ...]
Replacement = Callable[[torch.Tensor], torch.Tensor]


def _unchanged(value: torch.Tensor) -> torch.Tensor:
    return value


def _indices(values: list[int] | None, what: str) -> list[int] | None:
    if values is None:
        return None
    if not values:
        raise ValueError(f"list at least one of the {what}, or leave the key out for all of them")
    if min(values) < 0:
        raise ValueError(f"{what} are indices from 0")
    if len(set(values)) != len(values):
        raise ValueError(f"{what} are listed twice")
    return values


class SiteEdit(Intervention):
    """What every site edit takes: where, which seeds, when."""

    site: str = Field(description="a site of the model (`learnscope sites` lists them)")
    units: list[int] | None = Field(None, description="indices along the site's last axis (default: all)")
    heads: list[int] | None = Field(None, description="heads of a head-shaped site (default: all)")
    seeds: list[int] | None = Field(None, description="the seeds edited (default: every seed)")
    start: int = Field(0, ge=0, description="the first step edited")
    stop: int | None = Field(None, ge=1, description="the step at which editing ends (default: never)")

    @field_validator("units")
    @classmethod
    def _units_are_indices(cls, units):
        return _indices(units, "units")

    @field_validator("heads")
    @classmethod
    def _heads_are_indices(cls, heads, info):
        if heads is not None and info.data.get("units") is not None:
            raise ValueError("give units or heads, not both")
        return _indices(heads, "heads")

    @field_validator("stop")
    @classmethod
    def _stop_after_start(cls, stop, info):
        start = info.data.get("start")
        if stop is not None and start is not None and stop <= start:
            raise ValueError(f"must be after start ({start})")
        return stop

    def check_split(self, trainer: TrainerView, split: str | None, field: str) -> None:
        if split is not None and split not in trainer.data.splits:
            raise SpecError(f"{self.spec_path(trainer)}.{field}",
                            f"unknown split '{split}'; {one_of(split, trainer.data.splits)}")

    def selection(self, trainer: TrainerView) -> tuple[int, list[int]] | None:
        """(axis, indices) of the activation [S, B, ...] the edit replaces; None: all of it.
        Refuses, in one line, a site the model lacks and indices out of its range."""
        path = self.spec_path(trainer)
        model = trainer.model
        model.check_sites([self.site], f"{path}.site")
        shape = model.site_shapes(trainer.train_x[:, :2])[self.site]
        if self.heads is not None:
            axis = model.head_axis(self.site)
            if axis is None:
                heads = [s for s in model.site_names() if model.head_axis(s) is not None]
                valid = f"sites with heads: {', '.join(heads)}" if heads else "this model has none"
                raise SpecError(f"{path}.heads", f"site '{self.site}' has no head axis; {valid}; use units")
            indices, what = self.heads, "heads"
        elif self.units is not None:
            axis, indices, what = len(shape) + 1, self.units, "units"
        else:
            return None
        size = shape[axis - 2]
        if max(indices) >= size:
            raise SpecError(f"{path}.{what}", f"{max(indices)} is out of range: site '{self.site}' has {size} "
                            f"{what} (0 to {size - 1})")
        return axis, indices


class SiteEditState(InterventionState):
    """The schedule, the seeds and the selection of a site edit; subclasses say
    what replaces the selection (`replacement`)."""

    parameter_copies = 0

    def __init__(self, spec: SiteEdit, trainer: TrainerView):
        self.spec = spec
        self.select = spec.selection(trainer)
        chosen = spec.seeds
        self.edited = torch.tensor([chosen is None or seed in chosen for seed in trainer.seeds])
        self._recorded: tuple[int, torch.Tensor] | None = None  # (step, activations) of a split

    def active(self, step: int) -> bool:
        spec = self.spec
        return spec.start <= step and (spec.stop is None or step < spec.stop)

    def site_edits(self, trainer: TrainerView, step: int, members: slice, examples: slice) -> dict[str, Edit]:
        if not self.active(step):
            return {}
        seeds = self.edited[members]
        if not bool(seeds.any()):
            # an edit of none of these seeds still touches its site: a seed's forward pass
            # then takes the same path whichever seeds share it (in the transformer, the
            # final block in full), so that an ensemble equals its single runs
            return {self.spec.site: _unchanged}
        replacement = self.replacement(trainer, step, members, examples)
        return {self.spec.site: partial(self.apply, seeds, replacement)}

    def replacement(self, trainer: TrainerView, step: int, members: slice, examples: slice) -> Replacement:
        raise NotImplementedError

    def apply(self, seeds: torch.Tensor, replacement: Replacement, value: torch.Tensor) -> torch.Tensor:
        """`value` with the selection of the edited seeds replaced."""
        mask = seeds.to(value.device).view(-1, *([1] * (value.dim() - 1)))
        if self.select is not None:
            mask = mask & selected(value, *self.select)
        return torch.where(mask, replacement(value), value)

    @torch.no_grad()
    def recorded(self, trainer: TrainerView, split: str, step: int) -> torch.Tensor:
        """The site's activations on every example of `split`, [S, n, ...], on the
        unedited model at `step`: recorded once per step (parameters change only
        between steps), for the training passes and the probes alike."""
        if self._recorded is not None and self._recorded[0] == step:
            return self._recorded[1]
        model, x = trainer.model, trainer.data.splits[split][0]
        was_training = model.training
        model.eval()
        parts = []
        try:
            for start in range(0, x.shape[1], CHUNK):
                sites = Sites(read=[self.spec.site])
                model(x[:, start : start + CHUNK], sites)
                parts.append(sites.acts[self.spec.site])
        finally:
            model.train(was_training)
        acts = torch.cat(parts, dim=1)
        self._recorded = (step, acts)
        return acts


@registry.interventions.register("ablate")
class Ablate(SiteEdit):
    mode: Literal["zero", "mean"] = "zero"
    reference: str | None = Field(None, description="mode mean: the split the mean is over (default: the batch)")

    @field_validator("reference")
    @classmethod
    def _reference_is_for_the_mean(cls, reference, info):
        if reference is not None and info.data.get("mode") != "mean":
            raise ValueError("applies to mode mean")
        return reference

    def build(self, trainer) -> InterventionState:
        self.check_split(trainer, self.reference, "reference")
        return AblateState(self, trainer)


class AblateState(SiteEditState):
    spec: Ablate

    def __init__(self, spec: Ablate, trainer: TrainerView):
        super().__init__(spec, trainer)
        # a mean over the batch must see the whole batch in every pass
        self.whole_batches = spec.mode == "mean" and spec.reference is None

    def replacement(self, trainer: TrainerView, step: int, members: slice, examples: slice) -> Replacement:
        spec = self.spec
        if spec.mode == "zero":
            return lambda value: value.new_zeros(())
        if spec.reference is None:
            return lambda value: value.detach().mean(1, keepdim=True)
        mean = self.recorded(trainer, spec.reference, step)[members]
        return lambda value: mean

    def recorded(self, trainer: TrainerView, split: str, step: int) -> torch.Tensor:
        # only the mean is kept: [S, 1, ...] rather than the reference's every activation
        if self._recorded is not None and self._recorded[0] == step:
            return self._recorded[1]
        mean = super().recorded(trainer, split, step).mean(1, keepdim=True)
        self._recorded = (step, mean)
        return mean


@registry.interventions.register("patch")
class Patch(SiteEdit):
    source: str = Field(description="the split whose examples' activations are patched in")

    def build(self, trainer) -> InterventionState:
        self.check_split(trainer, self.source, "source")
        return PatchState(self, trainer)


class PatchState(SiteEditState):
    spec: Patch

    def replacement(self, trainer: TrainerView, step: int, members: slice, examples: slice) -> Replacement:
        source = self.recorded(trainer, self.spec.source, step)
        paired = torch.arange(examples.start, examples.stop, device=source.device) % source.shape[1]
        patched = source[members][:, paired]
        return lambda value: patched
