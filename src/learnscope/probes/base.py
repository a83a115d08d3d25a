"""Probes measure; they never change training.

A probe names what it needs (outputs of a split, activations of a site);
the ProbeContext runs one forward pass per split for all probes of a probe
step, in eval mode and without gradients, and hands each probe its view.
The interventions' edits of the model's sites at that step apply in these
passes too: the probes measure the model that trains.
Every probe returns one value per seed: tensors of shape [S].
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from pydantic import Field

from learnscope.errors import LearnscopeError, SpecError, one_of
from learnscope.models.base import Edit, EnsembleModel, Sites, then
from learnscope.models.trainer_view import TrainerView
from learnscope.spec import ProbeSpec
from learnscope.tasks.base import TaskInfo

# Examples per forward chunk at probe time: bounds memory, not results.
CHUNK = 4096


ALL = None  # "every example of the split"


def _wider(a: int | None, b: int | None) -> int | None:
    return ALL if a is ALL or b is ALL else max(a, b)


@dataclass
class Needs:
    """What probes read: model outputs on the leading examples of a split
    (`outputs`: split -> example count, ALL for the whole split), and site
    activations on the leading examples of a split (`sites`, `site_examples`).
    A probe step runs one forward pass per split over the most any probe reads."""

    outputs: dict[str, int | None] = field(default_factory=dict)
    sites: dict[str, set[str]] = field(default_factory=dict)  # split -> sites
    site_examples: dict[str, int] = field(default_factory=dict)  # split -> examples with sites

    def merge(self, other: Needs) -> None:
        for split, m in other.outputs.items():
            self.outputs[split] = _wider(self.outputs.get(split, 0), m)
        for split, sites in other.sites.items():
            self.sites.setdefault(split, set()).update(sites)
        for split, m in other.site_examples.items():
            self.site_examples[split] = max(self.site_examples.get(split, 0), m)

    def examples(self, split: str) -> int | None:
        """Leading examples of the split the forward pass must cover."""
        return _wider(self.outputs.get(split, 0), self.site_examples.get(split, 0))


class Probe(ProbeSpec):
    """A probe is a spec (its fields are its parameters) that measures.
    Subclasses give `metric_names` and `measure`; the trainer reads them
    through `names` and `measured`, which add the probe's `label`."""

    label: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]+$", description="names this entry's metrics "
                              "FAMILY@LABEL/..., so one probe can be listed twice with other parameters")

    def labelled(self, name: str) -> str:
        """A metric name with the label after its family: attention_sink/rate -> attention_sink@k1/rate."""
        if self.label is None:
            return name
        family, slash, rest = name.partition("/")
        return f"{family}@{self.label}{slash}{rest}"

    def names(self, info: TaskInfo) -> list[str]:
        """The metric names this entry records (labelled)."""
        return [self.labelled(name) for name in self.metric_names(info)]

    def measured(self, ctx: ProbeContext) -> dict[str, torch.Tensor]:
        """`measure`, under the names this entry records."""
        return {self.labelled(name): value for name, value in self.measure(ctx).items()}

    def check(self, info: TaskInfo, model: EnsembleModel, path: str) -> None:
        """Refuse, before training, a probe that cannot apply."""

    def needs(self, info: TaskInfo) -> Needs:
        return Needs()

    def metric_names(self, info: TaskInfo) -> list[str]:
        raise NotImplementedError

    def measure(self, ctx: ProbeContext) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def events(self, metrics: dict[str, list[float]]) -> list[ProbeEvent]:
        """Events these metrics mark, per seed, at a probe step (a threshold
        crossed): the runner records each (kind, seed) the first time only.
        `metrics` holds this probe's values, one per seed in the run's order."""
        return []


@dataclass(frozen=True)
class ProbeEvent:
    """An event a probe marks: the seed's index in the run, its kind, its detail."""

    member: int
    kind: str
    detail: dict


def check_splits(splits: Sequence[str], info: TaskInfo, path: str) -> None:
    for split in splits:
        if split not in info.splits:
            raise SpecError(path, f"unknown split '{split}'; {one_of(split, info.splits)}")


def needs_classification(info: TaskInfo, path: str, what: str) -> None:
    if not info.is_classification:
        raise SpecError(path, f"{what} needs a classification task; this task is regression (mse)")


def check_tensors(function: str, arguments: dict[str, tuple[object, str, str]]) -> None:
    """The arguments of a public probe function, or one LearnscopeError naming
    the function, the argument, what it needs and what it got. Each argument
    is (value, layout, kind): layout one letter per axis ("[S, N, D]"), and
    arguments that share a letter must agree on its size; kind "floating" or
    "integer" (its elements)."""
    sizes: dict[str, tuple[str, int]] = {}
    for name, (value, layout, kind) in arguments.items():
        axes = layout.strip("[]").split(", ")
        if not isinstance(value, torch.Tensor):
            raise LearnscopeError(f"{function}: {name} must be a torch.Tensor {layout}; got {type(value).__name__}")
        if value.dim() != len(axes):
            raise LearnscopeError(f"{function}: {name} must be {layout} ({len(axes)} axes); "
                                  f"got shape {tuple(value.shape)}")
        floating = value.is_floating_point()
        integer = not floating and not value.is_complex() and value.dtype != torch.bool
        if not (floating if kind == "floating" else integer):
            what = "floating-point numbers" if kind == "floating" else "integers"
            raise LearnscopeError(f"{function}: {name} must hold {what}; got {value.dtype}")
        for axis, size in zip(axes, value.shape):
            if axis in sizes and sizes[axis][1] != size:
                other, expected = sizes[axis]
                raise LearnscopeError(f"{function}: {name} has {axis} = {size} ({layout}, shape "
                                      f"{tuple(value.shape)}) but {other} has {axis} = {expected}")
            sizes.setdefault(axis, (name, size))


def needs_one_label_per_example(info: TaskInfo, path: str, what: str) -> None:
    needs_classification(info, path, what)
    if info.sequence:
        raise SpecError(path, f"{what} needs one label per example; this task labels every position of a sequence")


class ProbeContext:
    """Everything a probe may read at one probe step."""

    def __init__(self, trainer: TrainerView, step: int, needs: Needs):
        self.trainer = trainer
        self.step = step
        self.info = trainer.info
        self.model = trainer.model
        self._needs = needs
        self._outputs: dict[str, torch.Tensor] = {}
        self._sites: dict[str, dict[str, torch.Tensor]] = {}

    @property
    def params(self) -> list[torch.Tensor]:
        return self.trainer.params

    @property
    def initial_params(self) -> list[torch.Tensor]:
        return self.trainer.initial_params

    def targets(self, split: str) -> torch.Tensor:
        return self.trainer.data.splits[split][1]

    def outputs(self, split: str, max_examples: int | None = ALL) -> torch.Tensor:
        """Model outputs on the first `max_examples` examples of the split (all
        by default), [S, m, output_dim], with the targets from `targets(split)[:, :m]`."""
        if split not in self._outputs:
            self._forward(split)
        return self._outputs[split][:, :max_examples]

    def activations(self, split: str, site: str, max_examples: int) -> torch.Tensor:
        """Activations of `site` on the first `max_examples` examples of the split, [S, m, ...]."""
        if split not in self._sites:
            self._forward(split)
        return self._sites[split][site][:, :max_examples]

    def features(self, split: str, site: str, max_examples: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Activations of `site` on the first `max_examples` examples of the
        split, flattened to [S, m, features], with their targets [S, m, ...]."""
        acts = self.activations(split, site, max_examples)
        return acts.reshape(acts.shape[0], acts.shape[1], -1), self.targets(split)[:, :max_examples]

    def _whole_from_parts(self, split: str) -> bool:
        """Outputs of a split made of other splits that are measured whole
        anyway (a stream's `test` and every `test/e`) are those splits'
        outputs side by side: no second forward pass over the same examples."""
        parts = self.trainer.data.parts(split)
        whole = [self._needs.examples(s) is ALL for s in (split, *parts)]
        if not parts or not all(whole) or self._needs.sites.get(split):
            return False
        if self.trainer.site_edits(slice(0, self.trainer.members), slice(0, 1)):
            return False  # an edit may read the examples beside it (a mean over them): measure the split itself
        self._outputs[split] = torch.cat([self.outputs(part) for part in parts], dim=1)
        self._sites[split] = {}
        return True

    def _forward(self, split: str) -> None:
        if self._whole_from_parts(split):
            return
        x = self.trainer.data.splits[split][0][:, : self._needs.examples(split)]
        sites = self._needs.sites.get(split, set())
        site_limit = self._needs.site_examples.get(split, 0) if sites else 0
        self._outputs[split], self._sites[split] = self.run(x, read=sites, read_examples=site_limit)

    @torch.no_grad()
    def run(self, x: torch.Tensor, edits: Mapping[str, Edit] | None = None, read: Collection[str] = (),
            read_examples: int = 0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The model's outputs on examples x [S, m, ...] in eval mode, in chunks, with the
        interventions' site edits of this step and then `edits` applied (a probe's own: an
        ablation); and the activations of the `read` sites, on the chunks that start before
        `read_examples`."""
        outs, captured = [], {site: [] for site in read}
        members = slice(0, x.shape[0])
        was_training = self.model.training
        self.model.eval()
        try:
            for start in range(0, x.shape[1], CHUNK):
                chunk = x[:, start : start + CHUNK]
                # the interventions' site edits of this step: the probes measure the edited model
                step_edits = dict(self.trainer.site_edits(members, slice(start, start + chunk.shape[1])))
                for site, edit in (edits or {}).items():
                    earlier = step_edits.get(site)
                    step_edits[site] = edit if earlier is None else then(earlier, edit)
                reading = read if start < read_examples else ()
                capture = Sites(read=reading, edits=step_edits) if reading or step_edits else None
                outs.append(self.model(chunk, capture))
                if capture is not None:
                    for site, value in capture.acts.items():
                        captured[site].append(value)
        finally:
            self.model.train(was_training)
        return torch.cat(outs, dim=1), {site: torch.cat(values, dim=1) for site, values in captured.items()}
