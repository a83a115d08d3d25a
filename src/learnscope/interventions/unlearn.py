"""Machine unlearning methods: interventions of the unlearning phase.

An unlearning run starts from the original model (`init_from` its run: its
parameters become `trainer.initial_params`, the reference model), trains on
the forget set (`recipe.train_split: forget`, or `forget/r` for request r)
for the method's step budget (`recipe.steps`), and is compared with the
retrain oracle (trained on `retain` alone, same seeds). The update's batch
is a forget batch; a method's objective replaces the task loss. Retain
batches (`retain_batch` examples per seed, as many as the forget batch by
default) come from `trainer.sample(retain_split, ...)`, drawn per seed and
step; a batch with both is [forget ; retain] and is never cut across
examples (`whole_batches`). With ℓ the per-example task loss (for a
sequence, the mean cross-entropy over its scored positions) and means
taken over a batch's examples:

- `finetune`: ℓ on a retain batch, which replaces the forget batch (the
  fine-tuning baseline of every unlearning paper, e.g. MUSE);
- `gradient-ascent`: −ℓ on the forget batch ("Knowledge Unlearning for
  Mitigating Privacy Risks in Language Models", Jang et al. 2023; MUSE's GA);
- `gradient-difference`: −ℓ(forget) + retain_weight · ℓ(retain)
  ("Continual Learning and Private Unlearning", Liu et al. 2022; MUSE's GDR);
- `ga-kl`: −ℓ(forget) + kl_weight · KL(p_original ‖ p_θ) on a retain batch,
  per example (per scored position of a sequence, averaged over them), the
  original's outputs from the reference parameters (TOFU's KL; MUSE's KLR);
- `npo`, Negative Preference Optimization ("Negative Preference
  Optimization: From Catastrophic Collapse to Effective Unlearning", Zhang
  et al. 2024): (2/β) · mean softplus(β · (nll_ref − nll_θ)) over forget
  examples, nll the negative log-likelihood of an example's targets (its
  loss; for a sequence the sum over its scored positions, the likelihood of
  the whole continuation, as in the paper) under the current and the
  reference model, plus `retain_weight` · ℓ(retain) (NPO+RT). Its gradient
  is mean W · ∇(−nll_θ) with W = 2σ(β(nll_ref − nll_θ)) = 2π_θ^β / (π_θ^β +
  π_ref^β): at θ = reference W = 1, exactly gradient ascent's gradient on
  nll, and W shrinks as an example is unlearned (the paper's claim: the
  drift towards collapse is exponentially slower than GA's);
- `relabel`: ℓ on the forget batch with random wrong labels (uniform over
  the other classes; for a sequence, random wrong tokens at its scored
  positions), drawn per seed and step, plus `retain_weight` · ℓ(retain)
  (random relabeling: "Amnesiac Machine Learning", Graves et al. 2021; the
  random-label poisoning of "Class Machine Unlearning for Complex Data via
  Concepts Inference and Data Poisoning").

Every draw comes from generators derived from (seed, method, step), and the
reference is the run's initial parameters, so methods keep no state: a
resumed run draws exactly what the uninterrupted one did, and seeds stay
independent.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from pydantic import Field
from torch.func import functional_call

from learnscope import registry
from learnscope.errors import SpecError
from learnscope.losses import IGNORE, example_losses
from learnscope.seeding import generator
from learnscope.tasks.base import TaskInfo
from learnscope.train.hooks import Intervention, InterventionState


def scored_positions(targets: torch.Tensor) -> torch.Tensor:
    """[S, B, T] bool: the positions of a sequence's targets that are scored."""
    return (targets != IGNORE).reshape(*targets.shape[:2], -1)


def example_nll(info: TaskInfo, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """[S, B]: the negative log-likelihood of each example's targets (a
    sequence's: summed over its scored positions)."""
    losses = example_losses(info, outputs, targets)
    return losses * scored_positions(targets).sum(-1) if info.sequence else losses


def example_kl(info: TaskInfo, reference: torch.Tensor, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """[S, B]: KL(softmax(reference) ‖ softmax(outputs)) of each example; for a
    sequence, the mean over its scored positions."""
    log_ref, log_new = F.log_softmax(reference, -1), F.log_softmax(outputs, -1)
    kl = (log_ref.exp() * (log_ref - log_new)).sum(-1)
    if not info.sequence:
        return kl
    scored = scored_positions(targets)
    return (kl.reshape(scored.shape) * scored).sum(-1) / scored.sum(-1).clamp(min=1)


def reference_outputs(trainer, inputs: torch.Tensor, members: slice) -> torch.Tensor:
    """The reference (original) model's outputs for the seeds `members`: the
    trainer's initial parameters, which `init_from` sets to the original's."""
    names = [name for name, p in trainer.model.named_parameters() if p.requires_grad]
    with torch.no_grad():
        return functional_call(trainer.model, {n: p[members] for n, p in zip(names, trainer.initial_params)}, (inputs,))


class Unlearning(Intervention):
    """An unlearning method: a loss on the forget batch (the update's batch)
    plus, with a positive `retain_coefficient`, a weighted loss on a retain
    batch appended to it."""

    trains_on_forget: ClassVar[bool] = True  # False: the forget batch is dropped (fine-tuning on retain)

    def forget_loss(self, trainer, inputs, outputs, targets, members) -> torch.Tensor:
        """Per seed [len(members)], a mean over the forget examples."""
        raise NotImplementedError

    def forget_targets(self, trainer, targets: torch.Tensor) -> torch.Tensor:
        return targets

    def retain_coefficient(self) -> float:
        return 0.0

    def retain_loss(self, trainer, inputs, outputs, targets, members) -> torch.Tensor:
        return trainer.loss_per_seed(outputs, targets)

    def retain_draw(self) -> tuple[str, int | None]:
        """The split retain batches come from and their size (None: the forget batch's)."""
        return "retain", None

    def build(self, trainer) -> InterventionState:
        self._check_splits(trainer)
        return UnlearningState(self, trainer)

    def _check_splits(self, trainer) -> None:
        splits, retain = trainer.info.splits, self.retain_draw()[0]
        if retain not in splits:
            task = trainer.experiment.task.registry_name
            field = ".retain_split" if retain != "retain" else ""
            raise SpecError(f"{self.spec_path(trainer)}{field}", f"{self.registry_name} needs a task with forget and "
                            f"retain splits (e.g. forget-set, facts); task '{task}' has no split '{retain}' "
                            f"(it has {', '.join(splits)})")
        if trainer.recipe.train_split in ("train", retain):
            raise SpecError("recipe.train_split", f"{self.registry_name} unlearns the forget set: the updates' batches "
                            f"must come from it, not from '{trainer.recipe.train_split}' (set forget, or forget/r)")


class WithRetain(Unlearning):
    retain_split: str = Field("retain", min_length=1, description="the split of retain batches (keep/r for request r)")
    retain_batch: int | None = Field(
        None, ge=1, le=1_000_000, description="retain examples per update and seed; None: as many as the forget batch")

    def retain_draw(self) -> tuple[str, int | None]:
        return self.retain_split, self.retain_batch


class UnlearningState(InterventionState):
    parameter_copies = 0  # its reference is the trainer's initial parameters

    def __init__(self, spec: Unlearning, trainer):
        self.spec = spec
        self.weight = spec.retain_coefficient()
        self.retain_split, size = spec.retain_draw()
        self.retain_size = (size or trainer.sampler.drawn_batch()) if self.weight > 0 else 0
        self.extra_examples = self.retain_size
        self.whole_batches = spec.trains_on_forget and self.retain_size > 0  # [forget ; retain]
        self.forget_size = 0  # forget examples leading the update's batch

    def batch(self, trainer, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.spec.trains_on_forget:
            y = self.spec.forget_targets(trainer, y)
        else:
            x, y = x[:, :0], y[:, :0]
        self.forget_size = y.shape[1]
        if not self.retain_size:
            return x, y
        rx, ry = trainer.sample(self.retain_split, self.retain_size, f"{self.spec.registry_name}/retain")
        return torch.cat([x, rx], 1), torch.cat([y, ry], 1)

    def objective(self, trainer, inputs, outputs, targets, members) -> torch.Tensor:
        # a pass holds the whole [forget ; retain] batch, or a share of a batch of one kind
        f = self.forget_size if self.whole_batches else targets.shape[1] * self.spec.trains_on_forget
        loss = 0.0
        if f:
            loss = self.spec.forget_loss(trainer, inputs[:, :f], outputs[:, :f], targets[:, :f], members)
        if f < targets.shape[1]:
            loss = loss + self.weight * self.spec.retain_loss(trainer, inputs[:, f:], outputs[:, f:], targets[:, f:],
                                                              members)
        return loss


def ascent(trainer, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """−ℓ: the task loss, to be maximized."""
    return -trainer.loss_per_seed(outputs, targets)


class AscentOnForget:
    """The forget term of the ascent methods: −ℓ on the forget batch."""

    def forget_loss(self, trainer, inputs, outputs, targets, members):
        return ascent(trainer, outputs, targets)


# ---------------------------------------------------------------- the methods


@registry.interventions.register("finetune")
class Finetune(WithRetain):
    """Fine-tuning on retain batches, which replace the forget batch."""

    trains_on_forget: ClassVar[bool] = False

    def retain_coefficient(self) -> float:
        return 1.0


@registry.interventions.register("gradient-ascent")
class GradientAscent(AscentOnForget, Unlearning):
    """−ℓ on the forget batch."""


@registry.interventions.register("gradient-difference")
class GradientDifference(AscentOnForget, WithRetain):
    """−ℓ(forget) + retain_weight · ℓ(retain)."""

    retain_weight: float = Field(1.0, gt=0, le=1e6, description="weight of the retain loss")

    def retain_coefficient(self) -> float:
        return self.retain_weight


@registry.interventions.register("ga-kl")
class GradientAscentKL(AscentOnForget, WithRetain):
    """−ℓ(forget) + kl_weight · KL(p_original ‖ p_θ) on a retain batch."""

    kl_weight: float = Field(1.0, gt=0, le=1e6, description="weight of the KL to the original on retain")

    def retain_coefficient(self) -> float:
        return self.kl_weight

    def retain_loss(self, trainer, inputs, outputs, targets, members):
        reference = reference_outputs(trainer, inputs, members)
        return example_kl(trainer.info, reference, outputs, targets).mean(1)


@registry.interventions.register("npo")
class NPO(WithRetain):
    """(2/β) · mean softplus(β(nll_ref − nll_θ)) on the forget batch, plus
    retain_weight · ℓ(retain) (NPO+RT when positive)."""

    beta: float = Field(0.1, gt=0, le=1000, description="β: inverse temperature of the preference loss")
    retain_weight: float = Field(0.0, ge=0, le=1e6, description="weight of the retain loss (0: plain NPO)")

    def forget_loss(self, trainer, inputs, outputs, targets, members):
        nll = example_nll(trainer.info, outputs, targets)
        nll_ref = example_nll(trainer.info, reference_outputs(trainer, inputs, members), targets)
        return 2 / self.beta * F.softplus(self.beta * (nll_ref - nll)).mean(1)

    def retain_coefficient(self) -> float:
        return self.retain_weight


@registry.interventions.register("relabel")
class Relabel(WithRetain):
    """ℓ on the forget batch with random wrong labels, plus retain_weight · ℓ(retain)."""

    retain_weight: float = Field(0.0, ge=0, le=1e6, description="weight of the retain loss (0: none)")

    def forget_targets(self, trainer, targets: torch.Tensor) -> torch.Tensor:
        """Per seed and step, a wrong label for every example (every scored
        position of a sequence), uniform over the other classes."""
        classes, shape = trainer.info.output_dim, targets.shape[1:]
        shift = torch.stack([torch.randint(1, classes, shape, generator=generator(seed, "relabel", trainer.step))
                             for seed in trainer.seeds]).to(targets.device)
        return torch.where(targets == IGNORE, targets, (targets + shift) % classes)

    def forget_loss(self, trainer, inputs, outputs, targets, members):
        return trainer.loss_per_seed(outputs, targets)

    def retain_coefficient(self) -> float:
        return self.retain_weight
