"""The seed ensemble trainer: S seeds in lockstep, one stacked parameter set.

Per update: batch -> forward -> loss per seed (+ intervention terms) ->
backward -> gradient interventions -> optimizer step -> weight interventions.
The total loss is the sum of the per-seed losses, so each seed's gradient is
exactly its own. Nothing in the step reads a value back to the host; probes
do, every k steps.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from learnscope.errors import SpecError
from learnscope.probes.base import Needs, ProbeContext
from learnscope.spec import Experiment
from learnscope.train.allocator import keep_freed_memory
from learnscope.train.data import BatchSampler, EnsembleData
from learnscope.train.optim import make_optimizer, set_lr
from learnscope.train.passes import activation_bytes_per_example, examples_per_pass

ProbeCallback = Callable[[int, dict[str, torch.Tensor]], None]
SOFTMAX_MIN_WIDTH = 16


class Trainer:
    def __init__(self, experiment: Experiment, device: str | torch.device = "cpu"):
        keep_freed_memory()
        self.experiment = experiment
        self.recipe = experiment.recipe
        self.seeds = experiment.seed_list
        self.device = torch.device(device)
        self.data = EnsembleData(experiment.task, self.seeds, self.device)
        self.info = self.data.info
        self.model = experiment.model.build(self.info, self.seeds).to(self.device)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.initial_params = [p.detach().clone() for p in self.params]
        self.probe_needs = self._check_probes()

        self.train_x, self.train_y = self.data.splits["train"]
        n_train = self.train_y.shape[1]
        if self.recipe.batch_size is not None and self.recipe.batch_size > n_train:
            raise SpecError(
                "recipe.batch_size", f"{self.recipe.batch_size} exceeds the {n_train} training examples"
            )
        self.sampler = BatchSampler(self.seeds, n_train, self.recipe.batch_size)
        self.examples_per_pass = self._examples_per_pass()
        self.optimizer = make_optimizer(self.recipe, self.params)
        self.interventions = [iv.build(self) for iv in experiment.interventions]
        self.step = 0  # updates done so far
        self.last_loss = torch.full((len(self.seeds),), float("nan"), device=self.device)

    @property
    def members(self) -> int:
        return len(self.seeds)

    def _check_probes(self) -> Needs:
        needs = Needs()
        seen: dict[str, int] = {}
        for i, probe in enumerate(self.experiment.probes):
            path = f"probes[{i}]"
            probe.check(self.info, self.model, path)
            for name in probe.metric_names(self.info):
                if name in seen:
                    raise SpecError(path, f"metric '{name}' is already measured by probes[{seen[name]}]")
                seen[name] = i
            needs.merge(probe.needs(self.info))
        return needs

    def _examples_per_pass(self) -> int:
        batch = self.sampler.batch_size if not self.sampler.full_batch else self.sampler.n
        if self.recipe.microbatch is not None:
            return min(self.recipe.microbatch, batch)
        per_example = activation_bytes_per_example(self.loss_per_seed_of, self.train_x, self.train_y)
        return examples_per_pass(self.members, batch, per_example)

    # ------------------------------------------------------------ training

    def loss_per_seed_of(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.loss_per_seed(self.model(x), y)

    def loss_per_seed(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The task loss of each seed, averaged over its examples: [S]."""
        S = outputs.shape[0]
        if self.info.is_classification:
            classes = outputs.shape[-1]
            if classes < SOFTMAX_MIN_WIDTH:
                # CPU log-softmax over fewer than 16 classes takes a scalar path ~8x slower per
                # element; columns of -inf have probability 0 and gradient 0, so the loss is exact
                outputs = F.pad(outputs, (0, SOFTMAX_MIN_WIDTH - classes), value=float("-inf"))
            flat = F.cross_entropy(outputs.reshape(-1, outputs.shape[-1]), targets.reshape(-1), reduction="none")
            return flat.view(S, -1).mean(1)
        return (outputs - targets).square().reshape(S, -1).mean(1)

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.sampler.take(self.step, self.train_x, self.train_y)

    def train_step(self) -> None:
        set_lr(self.optimizer, self.recipe, self.step)
        x, y = self.batch()
        self.optimizer.zero_grad(set_to_none=True)
        n = y.shape[1]
        chunk = self.examples_per_pass
        self.last_loss = torch.zeros(len(self.seeds), device=self.device)
        for start in range(0, n, chunk):
            # Gradients accumulate over passes of at most `chunk` examples per seed, each
            # weighted by its share of the batch: the batch mean, with activations small
            # enough to stay in cache. Intervention loss terms must be means over examples
            # or independent of them, as the task loss is. (One pass: share 1, exact.)
            xc, yc = x[:, start : start + chunk], y[:, start : start + chunk]
            share = yc.shape[1] / n
            outputs = self.model(xc)
            task = self.loss_per_seed(outputs, yc)
            loss = task
            for state in self.interventions:
                extra = state.loss(self, outputs, yc)
                if extra is not None:
                    loss = loss + extra
            (loss.sum() * share).backward()
            self.last_loss += task.detach() * share
        for state in self.interventions:
            state.after_backward(self)
        self.optimizer.step()
        for state in self.interventions:
            state.after_step(self)
        self.step += 1

    # ------------------------------------------------------------ probing

    def measure(self) -> dict[str, torch.Tensor]:
        """Every probe's metrics at the current step, each of shape [S]."""
        ctx = ProbeContext(self, self.step, self.probe_needs)
        metrics: dict[str, torch.Tensor] = {}
        for probe in self.experiment.probes:
            metrics.update(probe.measure(ctx))
        return metrics

    def run(self, on_probe: ProbeCallback | None = None, on_step: Callable[[int], None] | None = None) -> None:
        """Train from the current step to the recipe's last step, calling
        `on_probe(step, metrics)` at every probe step."""
        probe_steps = self.recipe.probe_steps()
        pending = [s for s in probe_steps if s >= self.step]
        if pending and pending[0] == self.step and on_probe is not None:
            on_probe(self.step, self.measure())
        probe_at = set(pending)
        while self.step < self.recipe.steps:
            self.train_step()
            if on_step is not None:
                on_step(self.step)
            if self.step in probe_at and on_probe is not None:
                on_probe(self.step, self.measure())
