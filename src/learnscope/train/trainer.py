"""The seed ensemble trainer: S seeds in lockstep, one stacked parameter set.

Per update: batch -> forward -> loss per seed (+ intervention terms) ->
backward -> gradient interventions -> optimizer step -> weight interventions.
The total loss is the sum of the per-seed losses, so each seed's gradient is
exactly its own, and a seed whose loss turns NaN or Inf harms no other: it
is frozen at its last finite parameters (`diverged`) and the rest go on.

`state()` and `load_state()` capture everything the next steps depend on
(parameters, optimizer and intervention state, step, frozen seeds); the
batch order and the data are functions of the seeds and the step, so a run
restored from them continues exactly as if never stopped.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import cast

import torch
from torch.func import functional_call

from learnscope import faults
from learnscope.errors import SpecError, one_of
from learnscope.losses import example_losses
from learnscope.models.base import Edit, EnsembleModel, Model, Sites, then
from learnscope.probes.base import Needs, Probe, ProbeContext
from learnscope.seeding import generator, init_seeds
from learnscope.spec import Experiment, RunReference
from learnscope.tasks.base import Task
from learnscope.train.allocator import keep_freed_memory
from learnscope.train.data import BatchSampler, EnsembleData, gather
from learnscope.train.devices import deterministic_on, resolve_device
from learnscope.train.hooks import Intervention
from learnscope.train.optim import make_optimizer, set_lr
from learnscope.train.passes import PassPlan, activation_bytes_per_example, plan_passes

ProbeCallback = Callable[[int, dict[str, torch.Tensor]], None]
StepCallback = Callable[[int], None]
DivergeCallback = Callable[[int, int], None]  # (seed, step)


# An Experiment types its components by their spec bases (TaskSpec, ...): spec.py lies below
# the layers that say what a component does. Every registered component is one of its kind
# (a Task, a Model, a Probe, an Intervention); these say so to the type checker.


def task_of(experiment: Experiment) -> Task:
    return cast(Task, experiment.task)


def model_of(experiment: Experiment) -> Model:
    return cast(Model, experiment.model)


def probes_of(experiment: Experiment) -> list[Probe]:
    return cast("list[Probe]", experiment.probes)


def interventions_of(experiment: Experiment) -> list[Intervention]:
    return cast("list[Intervention]", experiment.interventions)


def copy_parameters(model: EnsembleModel, tensors: dict[str, torch.Tensor], stored_seeds: list[int],
                    seeds: list[int], source: str, path: str) -> None:
    """Set `model`'s parameters (but the fresh ones, e.g. adapters) to a
    checkpoint's (`tensors`, of the seeds `stored_seeds`, which must include `seeds`)."""
    missing = [s for s in seeds if s not in stored_seeds]
    if missing:
        raise SpecError(path, f"run '{source}' trained seeds {stored_seeds}; this experiment's seeds {missing} "
                        f"are not among them")
    index = [stored_seeds.index(s) for s in seeds]
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in model.fresh:
                continue
            stored = tensors.get(f"param/{name}")
            if stored is None or stored.shape[1:] != p.shape[1:]:
                got = "missing" if stored is None else f"{tuple(stored.shape[1:])}"
                raise SpecError(path, f"the model of run '{source}' does not match this model: "
                                f"parameter {name} is {got} there, {tuple(p.shape[1:])} here")
            p.copy_(stored[index])


def frozen_copy(trainer: Trainer, experiment: Experiment, tensors: dict[str, torch.Tensor], stored_seeds: list[int],
                source: str, path: str) -> EnsembleModel:
    """The model of another run (`experiment`'s, at its checkpoint `tensors`) for
    this trainer's seeds, on its device, whole (adapters included), in eval mode
    and without gradients: a teacher, a guide, an earlier generation."""
    model = model_of(experiment).build(trainer.info, trainer.seeds).to(trainer.params[0].device)
    model.fresh = frozenset()
    copy_parameters(model, tensors, stored_seeds, trainer.seeds, source, path)
    return model.eval().requires_grad_(False)


class Trainer:
    def __init__(self, experiment: Experiment, device: str | torch.device | None = "cpu"):
        keep_freed_memory()
        self.experiment = experiment
        self.recipe = experiment.recipe
        self.seeds = experiment.seed_list
        self.device = resolve_device(device)  # "auto", "cpu", "cuda", "mps"; one line if not on this machine
        deterministic_on(self.device)
        data_seeds = self.seeds if experiment.data_seed is None else [experiment.data_seed] * len(self.seeds)
        self.data = EnsembleData(task_of(experiment), data_seeds, self.device)
        self.info = self.data.info
        self.model = model_of(experiment).build(self.info, init_seeds(self.seeds, experiment.init_stream)).to(self.device)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.initial_params = [p.detach().clone() for p in self.params]
        self.probe_needs = self._check_probes()

        self.train_x, self.train_y = self._train_split()
        self.blocks = task_of(experiment).training_blocks(self.recipe.steps, self.recipe.train_split)
        ranges = self.data.experience_ranges() if self.blocks else None
        self.sampler = BatchSampler(self.seeds, self.train_y.shape[1], self.recipe.batch_size, self.blocks, ranges)
        self._check_batch_size(ranges)
        self._extra_probes = self._stream_probe_steps()
        self._param_names = [name for name, p in self.model.named_parameters() if p.requires_grad]
        self.optimizer = make_optimizer(self.recipe, self.params)
        self.interventions = [iv.build(self) for iv in interventions_of(experiment)]
        self.plan = self._plan_passes()  # after the interventions: they may change the pool (joint training)
        self.step = 0  # updates done so far
        self.last_loss = torch.full((len(self.seeds),), float("nan"), device=self.device)
        self.diverged = torch.zeros(len(self.seeds), dtype=torch.bool)  # frozen members
        self._held: list[torch.Tensor] = []  # parameters the diverged members are frozen at
        self.on_diverge: DivergeCallback | None = None

    @property
    def members(self) -> int:
        return len(self.seeds)

    def _check_probes(self) -> Needs:
        needs = Needs()
        seen: dict[str, int] = {}
        for i, probe in enumerate(probes_of(self.experiment)):
            path = f"probes[{i}]"
            probe.check(self.info, self.model, path)
            for name in probe.names(self.info):
                if name in seen:
                    raise SpecError(path, f"metric '{name}' is already measured by probes[{seen[name]}]")
                seen[name] = i
            needs.merge(probe.needs(self.info))
        return needs

    def _train_split(self) -> tuple[torch.Tensor, torch.Tensor]:
        split = self.recipe.train_split
        if split not in self.data.splits:
            raise SpecError("recipe.train_split", f"unknown split '{split}'; {one_of(split, self.data.splits)}")
        alone = [f"train/{e}" for e in range(self.info.experiences or 0)]
        if self.info.experiences and split not in ("train", *alone):
            raise SpecError("recipe.train_split", f"a stream trains on its experiences' blocks (train) or on one "
                            f"experience alone; valid: train, {', '.join(alone)}")
        return self.data.splits[split]

    def initialize_from(self, tensors: dict[str, torch.Tensor], seeds: list[int], source: str) -> None:
        """Start from another run's parameters (its seeds must include this
        trainer's): they become the initial parameters, the reference of
        relative weight change and of unlearning objectives."""
        copy_parameters(self.model, tensors, seeds, self.seeds, source, "init_from")
        self.initial_params = [p.detach().clone() for p in self.params]

    def read_run(self, reference: RunReference, experiment: Experiment, tensors: dict[str, torch.Tensor],
                 seeds: list[int], source: str) -> None:
        """Hand the last checkpoint of a run the spec reads (`reference`; the run
        `source`, of `experiment`) to what reads it."""
        if reference.intervention is None:
            self.initialize_from(tensors, seeds, source)
        else:
            self.interventions[reference.intervention].read_run(self, reference, experiment, tensors, seeds, source)

    def _check_batch_size(self, ranges: list[tuple[int, int]] | None) -> None:
        size = self.recipe.batch_size
        pools = {"the": (0, self.sampler.n)} if ranges is None else {f"experience {e}'s": r for e, r in enumerate(ranges)}
        for what, (low, high) in pools.items():
            if size is not None and size > high - low:
                raise SpecError("recipe.batch_size", f"{size} exceeds {what} {high - low} training examples")

    def _stream_probe_steps(self) -> frozenset[int]:
        """A stream is also probed at every block's end (the accuracy matrix) and at
        each of the `probe_after_switch` updates after every switch (the stability gap)."""
        window = self.recipe.probe_after_switch
        if not self.blocks:
            if window:
                raise SpecError("recipe.probe_after_switch", "applies to streams of experiences; this task is not one")
            return frozenset()
        steps = {block.stop for block in self.blocks}
        for block in self.blocks[1:]:
            steps.update(range(block.start + 1, min(block.start + window, block.stop) + 1))
        return frozenset(steps)

    def is_probe_step(self, step: int) -> bool:
        return self.recipe.is_probe_step(step) or step in self._extra_probes

    def probe_count(self) -> int:
        return self.recipe.probe_count() + sum(not self.recipe.is_probe_step(s) for s in self._extra_probes)

    def _plan_passes(self) -> PassPlan:
        self.update_examples = self.sampler.drawn_batch() + sum(state.extra_examples for state in self.interventions)  # per seed
        self.activation_bytes = activation_bytes_per_example(self.loss_per_seed_of, self.train_x, self.train_y)
        return self.pass_plan(self.members)

    def pass_plan(self, members: int) -> PassPlan:
        """The passes of an update of this experiment for `members` seeds (the memory
        estimate plans an S-seed ensemble's from a one-seed trainer)."""
        batch = self.update_examples
        whole = any(state.whole_batches for state in self.interventions)
        return plan_passes(members, batch, self.activation_bytes, batch if whole else self.recipe.microbatch)

    # ------------------------------------------------------------ training

    def loss_per_seed_of(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.loss_per_seed(self.model(x), y)

    def loss_per_seed(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The task loss of each seed, the mean of its examples' losses: [S]."""
        return example_losses(self.info, outputs, targets, self.recipe.loss).mean(1)

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.sampler.take(self.step, self.train_x, self.train_y)
        return x, y

    def sample(self, split: str, size: int, stream: str) -> tuple[torch.Tensor, torch.Tensor]:
        """`size` examples per seed of `split` (all of them if it has fewer), uniformly
        without replacement, from generators derived from (seed, stream, step): an
        intervention's extra batches (e.g. retain examples for an unlearning
        objective), drawn the same after a resume."""
        x, y = self.data.splits[split]
        n = y.shape[1]
        idx = torch.stack([torch.randperm(n, generator=generator(seed, stream, self.step))[:size] for seed in self.seeds])
        x, y = gather(idx, x, y)
        return x, y

    def train_step(self) -> None:
        if self.blocks:
            index = self.sampler.block_index(self.step)
            assert index is not None  # a stream's every step lies in a block
            if self.blocks[index].start == self.step:
                for state in self.interventions:
                    state.on_block(self, self.blocks[index], self.blocks[index - 1] if index else None)
        set_lr(self.optimizer, self.recipe, self.step)
        x, y = self.batch()
        for state in self.interventions:
            x, y = state.batch(self, x, y)
        self.optimizer.zero_grad(set_to_none=True)
        self.last_loss = self.accumulate_gradients(x, y)
        self._check_divergence()
        faults.point("step")
        for state in self.interventions:
            state.after_backward(self)
        self.optimizer.step()
        for state in self.interventions:
            state.after_step(self)
        if self._held:
            self._restore_diverged()
        self.step += 1

    def accumulate_gradients(self, x: torch.Tensor, y: torch.Tensor, interventions: bool = True) -> torch.Tensor:
        """Add the gradient of the mean loss over the batch (x [S, B, ...], y [S, B, ...])
        to every parameter's .grad, pass by pass; returns the task loss per seed [S].
        `interventions`: add the interventions' loss terms (the training objective)."""
        n = y.shape[1]
        passes = self.plan.passes(self.members, n)
        grouped = self.plan.seeds < self.members
        if grouped:
            for p in self.params:
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
        task_loss = None if len(passes) == 1 else torch.zeros(self.members, device=self.device)
        for members, examples in passes:
            # Each pass is a group of seeds on a share of the batch; gradients accumulate,
            # weighted by the share: the batch mean. Intervention loss terms must be means
            # over examples or independent of them, as the task loss is.
            xc, yc = x[members, examples], y[members, examples]
            share = yc.shape[1] / n
            leaves = self._group_leaves(members) if grouped else None
            edits = self.site_edits(members, examples)
            sites = Sites(edits=edits) if edits else None
            outputs = self.model(xc, sites) if leaves is None else functional_call(self.model, leaves, (xc, sites))
            task = self.loss_per_seed(outputs, yc)
            loss = task
            active = self.interventions if interventions else ()
            for state in active:  # an objective of its own replaces the task loss (unlearning)
                objective = state.objective(self, xc, outputs, yc, members)
                if objective is not None:
                    loss = objective
            for state in active:
                extra = state.loss(self, xc, outputs, yc, members)
                if extra is not None:
                    loss = loss + extra
            (loss.sum() * share if share != 1 else loss.sum()).backward()
            if leaves is not None:
                for p, leaf in zip(self.params, leaves.values()):
                    grad = p.grad
                    assert grad is not None and leaf.grad is not None  # zeroed above; every parameter is in the loss
                    grad[members] += leaf.grad
            if task_loss is None:  # one pass (most runs): no accumulation
                task_loss = task.detach()
            else:
                task_loss[members] += task.detach() * share
        assert task_loss is not None  # set by the one pass, or zeros before several
        return task_loss

    def site_edits(self, members: slice, examples: slice) -> dict[str, Edit]:
        """The interventions' edits of the model's sites for one forward pass at this
        step (InterventionState.site_edits); two edits of one site apply in the
        interventions' order. Empty (and the pass edits nothing) without any."""
        edits: dict[str, Edit] = {}
        for state in self.interventions:
            for site, edit in state.site_edits(self, self.step, members, examples).items():
                earlier = edits.get(site)
                edits[site] = edit if earlier is None else then(earlier, edit)
        return edits

    def gradients(self, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
        """The task-loss gradient on a batch, one tensor per parameter, leaving
        the parameters' .grad as it was (for strategies that need a second
        gradient: A-GEM's reference gradient, EWC's Fisher information)."""
        saved = [p.grad for p in self.params]
        for p in self.params:
            p.grad = None
        self.accumulate_gradients(x, y, interventions=False)
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]
        for p, g in zip(self.params, saved):
            p.grad = g
        return grads

    def _group_leaves(self, members: slice) -> dict[str, torch.Tensor]:
        """The group's slices of every parameter, as leaves of their own: a pass
        over them computes gradients of the group alone (slicing the parameters
        inside the graph would build a full-size gradient per group)."""
        return {name: p.detach()[members].requires_grad_() for name, p in zip(self._param_names, self.params)}

    # ------------------------------------------------------------ divergence

    def _check_divergence(self) -> None:
        """Freeze members whose loss is no longer finite, before the update that
        would carry the non-finite values into their parameters. One host read
        of S losses per step: under a microsecond on a CPU."""
        losses = self.last_loss.tolist()
        if all(map(math.isfinite, losses)):
            return
        new = [k for k, loss in enumerate(losses) if not math.isfinite(loss) and not self.diverged[k]]
        if not new:
            return
        with torch.no_grad():
            if not self._held:
                self._held = [p.detach().clone() for p in self.params]
            for p, held in zip(self.params, self._held):
                held[new] = p[new]
        self.diverged[new] = True
        for k in new:
            if self.on_diverge is not None:
                self.on_diverge(self.seeds[k], self.step)

    @torch.no_grad()
    def _restore_diverged(self) -> None:
        mask = self.diverged.to(self.device)
        for p, held in zip(self.params, self._held):
            p.copy_(torch.where(mask.view(-1, *([1] * (p.dim() - 1))), held, p))

    # ------------------------------------------------------------ state

    def state(self) -> tuple[dict[str, torch.Tensor], dict]:
        """(tensors, metadata) from which `load_state` continues this run exactly."""
        tensors = {f"param/{name}": p.detach() for name, p in self.model.named_parameters()}
        optimizer = self.optimizer.state_dict()
        for index, entries in optimizer["state"].items():
            for key, value in entries.items():
                if value is not None:  # SGD without momentum keeps a None buffer
                    tensors[f"optimizer/{index}/{key}"] = value
        for j, intervention in enumerate(self.interventions):
            for key, value in intervention.state_dict().items():
                tensors[f"intervention/{j}/{key}"] = value
        tensors["diverged"] = self.diverged
        meta = {"step": self.step, "seeds": self.seeds, "param_groups": optimizer["param_groups"]}
        return {k: v.detach().cpu().contiguous() for k, v in tensors.items()}, meta

    def load_state(self, tensors: dict[str, torch.Tensor], meta: dict) -> None:
        if meta["seeds"] != self.seeds:
            raise ValueError(f"the checkpoint holds seeds {meta['seeds']}, this trainer {self.seeds}")
        with torch.no_grad():
            for name, p in self.model.named_parameters():
                p.copy_(tensors[f"param/{name}"])
        optimizer_state: dict[int, dict[str, torch.Tensor]] = {}
        interventions: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in tensors.items():
            kind, _, rest = key.partition("/")
            if kind in ("optimizer", "intervention"):
                index, _, name = rest.partition("/")
                target = optimizer_state if kind == "optimizer" else interventions
                target.setdefault(int(index), {})[name] = value
        # a checkpoint loads onto this trainer's device, whichever it was written from: the
        # optimizer moves its state to its parameters' device; an intervention's tensors go
        # where its fresh state keeps them (the trainer's device for those it has not made yet)
        self.optimizer.load_state_dict({"state": optimizer_state, "param_groups": meta["param_groups"]})
        for j, intervention in enumerate(self.interventions):
            fresh = intervention.state_dict()
            intervention.load_state_dict({key: value.to(fresh[key].device if key in fresh else self.device)
                                          for key, value in interventions.get(j, {}).items()})
        self.diverged = tensors["diverged"].clone()
        self._held = [p.detach().clone() for p in self.params] if bool(self.diverged.any()) else []
        self.step = int(meta["step"])

    # ------------------------------------------------------------ probing

    def measure(self) -> dict[str, torch.Tensor]:
        """Every probe's metrics at the current step, each of shape [S]."""
        ctx = ProbeContext(self, self.step, self.probe_needs)
        metrics: dict[str, torch.Tensor] = {}
        for probe in probes_of(self.experiment):
            metrics.update(probe.measured(ctx))
        return metrics

    def run(self, on_probe: ProbeCallback | None = None, on_step: StepCallback | None = None,
            on_checkpoint: StepCallback | None = None) -> None:
        """Train from the current step to the recipe's last step, calling
        `on_probe(step, metrics)` at every probe step (the current one included)
        and `on_checkpoint(step)` at every checkpoint step after it."""
        recipe = self.recipe
        # a process-wide CPU flag (torch has no getter): set for this run, back to the default after
        flushing = recipe.flush_denormal and torch.set_flush_denormal(True)
        try:
            for state in self.interventions:
                state.on_start(self)
            if self.is_probe_step(self.step) and on_probe is not None:
                on_probe(self.step, self.measure())
            if recipe.steps == 0 and on_checkpoint is not None:  # a run of its initialization keeps it
                on_checkpoint(0)
            while self.step < recipe.steps:
                self.train_step()
                if on_step is not None:
                    on_step(self.step)
                if self.is_probe_step(self.step) and on_probe is not None:
                    on_probe(self.step, self.measure())
                if recipe.is_checkpoint_step(self.step) and on_checkpoint is not None:
                    on_checkpoint(self.step)
        finally:
            if flushing:
                torch.set_flush_denormal(False)
