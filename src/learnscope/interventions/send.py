"""Sensitive-neuron dropout (SeND): in training, deterministically drop the
units of a site whose activations on a fixed set of examples varied most
across the recent checkpoints ("Hallucination Detox: Sensitive Neuron
Dropout (SeND) for Large Language Model Training", Mohammadzadeh et al.
2024; the authors' code: github.com/notarobot-hub/SEND).

Every `every` updates (after update t with (t + 1) % every == 0) a
snapshot is taken, per seed: the activations of `site` (units along its
last axis; every position of a sequence counts as an example of its own)
on the first `examples` examples of `split`, on the model in eval mode
without any site edit. Once `window` snapshots are held, each new snapshot
recomputes, per seed from its own last `window` snapshots h_1..h_W (oldest
first), every unit's sensitivity

- `score: change-variance` (the default, the source's): for each example,
  the unit's net change sum_w |h_{w+1} - h_w| times its variance across
  the snapshots (population variance, numpy's np.var), then the mean over
  the examples;
- `score: variance`: the variance across the snapshots alone, averaged
  over the examples (the paper's words: neurons "with significant
  variability");

and the floor(share x units) most sensitive units (ties to the lower
index) are the sensitive neurons: zeroed in every training pass of the
updates from then on (and from update `start`), until the next recompute
replaces them. The kept units are not rescaled, as in the source. No
randomness is drawn: the drop is deterministic, and an ensemble's seeds
each follow their own snapshots.

What the source does, and where this differs. Its analysis code scores an
embedding index of one input by (net change across checkpoints) x
(variance across checkpoints), as `change-variance` does. Its training
scripts snapshot the penultimate layer's embedding of the second-to-last
token of a held-out tracking set once per epoch, recompute every second
epoch from the latest (up to three) snapshots, and drop the top 20-30% of
indices by zeroing the weights into and out of those units of one MLP
layer (no rescaling), for up to three epochs. Two differences: (1) those
scripts average the snapshots over the epochs before scoring, so their
statistic runs across the tracking examples rather than the checkpoints;
here the score follows the paper and the analysis code, across the
snapshots per example, then averaged over the examples; (2) the source's
zeroed weights silence the units at evaluation too (until training regrows
them); here the drop is a mask on the site's activation in training passes
only, as dropout is: the probes, in eval mode, see every unit. A dropped
unit gets no gradient through the site while it is dropped.

Everything the next updates depend on (the held snapshots, their count,
the current drop mask) is in the checkpoint: a resumed run drops the same
units. Snapshots cost one forward pass without gradients over `examples`
examples every `every` updates.

Measured, not claimed: in small settings this did not lower the variance
across late checkpoints that the source reports; it raised it. Digits, an
MLP of 128 ReLU units, Adam lr 3e-3, batches of 32, SeND at `hidden.0`
(64 training examples, every 10, window 3, share 0.2), 16 seeds, 1500
updates: the test loss's variance over the last 20 probes (one every 10
updates) was 2.4-56x plain training's, the variance of a test example's
label log-probability (the mean over 32 examples) 1.9-77x, and the final
test accuracy differed from plain training's by -0.031 to +0.004. The
likely cause is churn: a dropped unit takes no gradient, so its activation
stops varying, and the next recompute releases it. It comes back with its
old weights after the other units have adapted to its absence. With the
first mask kept for good (a trial, 4 seeds), the ratios were about 1
(0.8-1.4). In no other setting
tried (4 seeds each) did it lower the variance consistently either: noisy
labels under SGD, two hidden layers (at the penultimate one), a tiny
transformer language model, snapshots every 1-100 updates, windows of
3-50, either score, fine-tuning a trained MLP. Shares of 0.02-0.05 shrank
the rise (ratios 0.8-4.8, most above 1) but did not turn it into a fall.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from learnscope import registry
from learnscope.errors import SpecError, one_of
from learnscope.models.base import Edit, Sites
from learnscope.models.trainer_view import TrainerView
from learnscope.probes.base import CHUNK
from learnscope.train.hooks import Intervention, InterventionState


def sensitivity(snapshots: torch.Tensor, score: str = "change-variance") -> torch.Tensor:
    """Per seed and unit, the sensitivity of the snapshots [S, W, N, D] (W
    snapshots, oldest first, of N examples' D units): [S, D]."""
    variance = snapshots.var(dim=1, unbiased=False)
    if score == "variance":
        return variance.mean(1)
    change = snapshots.diff(dim=1).abs().sum(1)
    return (change * variance).mean(1)


def most_sensitive(scores: torch.Tensor, count: int) -> torch.Tensor:
    """A bool mask [S, D]: per seed, the `count` units of highest score (ties to the lower index)."""
    order = torch.argsort(scores, dim=-1, descending=True, stable=True)[:, :count]
    return torch.zeros_like(scores, dtype=torch.bool).scatter_(-1, order, True)


@registry.interventions.register("sensitive-neuron-dropout")
class SensitiveNeuronDropout(Intervention):
    """In training, zero the share of `site`'s units whose activations varied most across recent snapshots."""

    site: str = Field(description="a site of the model (`learnscope sites` lists them); units along its last axis")
    split: str = Field("train", description="the split whose first `examples` examples are snapshotted")
    examples: int = Field(64, ge=1, description="examples snapshotted (the split's first; all if it has fewer)")
    every: int = Field(10, ge=1, description="updates between snapshots")
    window: int = Field(3, ge=2, description="the recent snapshots a unit's sensitivity is computed over")
    share: float = Field(0.2, gt=0, lt=1, description="share of the site's units dropped (rounded down)")
    score: Literal["change-variance", "variance"] = Field(
        "change-variance", description="change-variance: net change times variance across snapshots (the "
        "source's); variance: the variance alone")
    start: int = Field(0, ge=0, description="the first update whose training passes may drop units")

    def build(self, trainer: TrainerView) -> InterventionState:
        path = self.spec_path(trainer)
        model = trainer.model
        model.check_sites([self.site], f"{path}.site")
        if self.split not in trainer.data.splits:
            raise SpecError(f"{path}.split", f"unknown split '{self.split}'; {one_of(self.split, trainer.data.splits)}")
        shape = model.site_shapes(trainer.train_x[:, :1])[self.site]
        units = shape[-1]
        dropped = int(self.share * units)
        if dropped < 1:
            raise SpecError(f"{path}.share", f"{self.share:g} of the {units} units of site '{self.site}' is none; "
                            f"give at least 1/{units} = {1 / units:.4g}")
        last = trainer.recipe.steps - 1
        first = max(self.window * self.every, self.start)  # the first update a mask can apply to
        if first > last:
            why = (f"start {self.start} is" if self.start > self.window * self.every else
                   f"after {self.window} snapshots every {self.every} updates the first mask is for update {first},")
            raise SpecError(path, f"{why} past the run's last update, {last}: no unit would ever be dropped")
        return SensitiveNeuronDropoutState(self, trainer, units, dropped)


class SensitiveNeuronDropoutState(InterventionState):
    parameter_copies = 0

    def __init__(self, spec: SensitiveNeuronDropout, trainer: TrainerView, units: int, dropped: int):
        self.spec = spec
        self.dropped_units = dropped
        x = trainer.data.splits[spec.split][0][:, : spec.examples]
        self.inputs = x
        examples = self.record(trainer).shape[1]  # examples x positions
        device = x.device
        self.snapshots = torch.zeros(trainer.members, spec.window, examples, units, device=device)
        self.held = 0  # snapshots taken so far, capped at the window
        self.dropped = torch.zeros(trainer.members, units, dtype=torch.bool, device=device)

    @torch.no_grad()
    def record(self, trainer: TrainerView) -> torch.Tensor:
        """The site's activations on the snapshot examples, [S, N, D] (positions flattened into N),
        on the model in eval mode without site edits."""
        model, site = trainer.model, self.spec.site
        was_training = model.training
        model.eval()
        parts = []
        try:
            for begin in range(0, self.inputs.shape[1], CHUNK):
                sites = Sites(read=[site])
                model(self.inputs[:, begin : begin + CHUNK], sites)
                parts.append(sites.acts[site])
        finally:
            model.train(was_training)
        acts = torch.cat(parts, dim=1)
        return acts.reshape(acts.shape[0], -1, acts.shape[-1]).float()

    @property
    def ready(self) -> bool:
        """Whether the window is full, so that a mask has been computed."""
        return self.held >= self.spec.window

    def after_step(self, trainer: TrainerView) -> None:
        if (trainer.step + 1) % self.spec.every:
            return
        snapshot = self.record(trainer)
        self.snapshots = torch.cat([self.snapshots[:, 1:], snapshot.unsqueeze(1)], dim=1)  # oldest first
        self.held = min(self.held + 1, self.spec.window)
        if self.ready:
            self.dropped = most_sensitive(sensitivity(self.snapshots, self.spec.score), self.dropped_units)

    def site_edits(self, trainer: TrainerView, step: int, members: slice, examples: slice) -> dict[str, Edit]:
        if not trainer.model.training or step < self.spec.start or not self.ready:
            return {}  # probes measure the model with every unit
        keep = ~self.dropped[members]

        def drop(value: torch.Tensor) -> torch.Tensor:
            mask = keep.to(value.device, value.dtype).view(keep.shape[0], *([1] * (value.dim() - 2)), -1)
            return value * mask

        return {self.spec.site: drop}

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"snapshots": self.snapshots, "held": torch.tensor(self.held), "dropped": self.dropped}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.snapshots = state["snapshots"].clone()
        self.held = int(state["held"])
        self.dropped = state["dropped"].clone()
