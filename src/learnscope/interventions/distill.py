"""Distillation strategies for continual learning.

`lwf`, Learning without Forgetting (Li & Hoiem 2017, "Learning without
Forgetting"): when a new experience begins, the parameters are kept as the
previous model; while training on the new experience, its outputs on the
current inputs are distilled into the model being trained, with the loss

    alpha · T² · KL(softmax(old / T) ‖ softmax(new / T)),

a mean over the batch's examples (T² keeps the gradient's scale independent
of the temperature, as in Hinton et al.'s distillation). Which outputs are
distilled is what the previous model knew:

- one head over all classes: one softmax over the classes of the
  experiences met before the current block, read per seed from their
  training labels. In a class-incremental `split-stream` (scenario `class`)
  these are the old classes, the new ones being left to the task loss; in a
  `permuted-stream` every experience has every class: all outputs;
- one head per experience (`split-stream` scenario `task`, the task id
  given): one softmax per head of an experience met before, the KL terms
  summed, as in the paper's multi-head setting.

No data or examples of earlier experiences are kept: only the snapshot.

`distill`, knowledge distillation from a teacher: the last checkpoint of
another run (`teacher`: its run id, or "@ARM" for an arm of the same
phenomenon), of any model that reads the same inputs and has the same
outputs; a run of 0 updates is a teacher frozen at its random
initialization ("Random Teachers are Good Teachers"). The student's
objective replaces the task loss:

    (1 - alpha) · task loss + alpha · D(teacher, student),

with D one of
- `kl`: T² · KL(softmax(teacher / T) ‖ softmax(student / T)), a mean over
  the batch's examples: Hinton et al.'s logit distillation, the same
  function as LwF's term above (one KD);
- `sinkhorn`: the Sinkhorn distance between the batch's teacher and
  student distributions at temperature T, as SinKD's code computes it
  ("Sinkhorn Distance Minimization for Knowledge Distillation", read in
  2018cx/SinKD, `loss.py`): the cost W[i, j] = ‖p_s(x_i) − p_t(x_j)‖₁
  between every student and teacher distribution of the batch, the kernel
  K = exp(−W / ε) normalized by rows and then columns `iterations` times
  into a transport plan P (gradients flow through it, as there), and
  D = Σᵢⱼ P[i, j] W[i, j], a sum over the batch's pairs: it needs whole
  batches, and its weight depends on the batch size, as in the source.

`teacher_temperature` T_t, when given, softens the teacher's outputs
instead of T (the student's stays T, and so does the factor T²): DINO's
sharper teacher (T_t < T), as "Random Teachers are Good Teachers" distills
(softmax(teacher / τ_t) against softmax(student / τ_s); its cross-entropy
differs from the KL by the teacher's entropy, which no gradient reaches).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch.func import functional_call

from learnscope import registry
from learnscope.errors import SpecError
from learnscope.spec import Experiment, RunReference
from learnscope.tasks.base import Block
from learnscope.train.hooks import Intervention, InterventionState, StreamBudget, experience_ended
from learnscope.train.trainer import frozen_copy


@registry.interventions.register("lwf")
class LwF(Intervention):
    alpha: float = Field(1.0, ge=0, description="weight of the distillation loss")
    temperature: float = Field(2.0, gt=0, le=1000, description="T: softmax temperature of old and new outputs")

    @classmethod
    def stream_strategy(cls, budget: StreamBudget) -> dict:
        return {"alpha": 1.0, "temperature": 2.0}  # alpha 3 forgot least but learned less than naive training

    def build(self, trainer) -> InterventionState:
        self.require_stream(trainer)  # streams are classification tasks: there are classes to distill
        return LwFState(self, trainer)


def distillation_kl(old: torch.Tensor, new: torch.Tensor, temperature: float,
                    distilled: torch.Tensor | None = None, old_temperature: float | None = None) -> torch.Tensor:
    """T² · KL(softmax(old/T_old) ‖ softmax(new/T)), per example [...], of
    logits [..., C], T_old = `old_temperature` if given, else T: over the
    classes `distilled` (bool, broadcast against the logits) when given, over
    all of them otherwise. T² keeps the gradient's scale independent of the
    temperature (Hinton et al.)."""
    old_t = temperature if old_temperature is None else old_temperature
    if distilled is None:
        log_old, log_new = F.log_softmax(old / old_t, -1), F.log_softmax(new / temperature, -1)
        return temperature ** 2 * (log_old.exp() * (log_old - log_new)).sum(-1)

    def log_softmax(logits, t):
        return F.log_softmax(logits.masked_fill(~distilled, float("-inf")) / t, -1).masked_fill(~distilled, 0)

    log_old, log_new = log_softmax(old, old_t), log_softmax(new, temperature)
    return temperature ** 2 * (log_old.exp() * distilled * (log_old - log_new)).sum(-1)


def sinkhorn_distance(student: torch.Tensor, teacher: torch.Tensor, epsilon: float, iterations: int) -> torch.Tensor:
    """SinKD's Sinkhorn distance between the distributions of a batch, per
    seed: student and teacher [S, B, C] probabilities -> [S]."""
    cost = torch.cdist(student, teacher, p=1)  # [S, B, B]: student i against teacher j
    plan = torch.exp(-cost / epsilon)
    for _ in range(iterations):
        plan = plan / plan.sum(-1, keepdim=True)
        plan = plan / plan.sum(-2, keepdim=True)
    return (plan * cost).sum((-2, -1))


@registry.interventions.register("distill")
class Distill(Intervention):
    teacher: str = Field(min_length=1, description="the run whose last checkpoint is the teacher: a run id, or "
                         "'@ARM' for an arm of the same phenomenon; a run of 0 updates is a random teacher")
    alpha: float = Field(0.5, ge=0, le=1, description="weight of the distillation term; the task loss has 1 - alpha")
    temperature: float = Field(4.0, gt=0, le=1000, description="T: softmax temperature of teacher and student")
    teacher_temperature: float | None = Field(None, gt=0, le=1000, description="T_t: the teacher's temperature "
                                              "instead of T (DINO's sharper teacher: T_t < T); None: T")
    loss: Literal["kl", "sinkhorn"] = Field("kl", description="kl: T²·KL per example (Hinton); sinkhorn: SinKD's "
                                            "Sinkhorn distance between the batch's distributions")
    epsilon: float = Field(0.1, gt=0, description="sinkhorn: the entropic regularization of the kernel exp(-W/eps)")
    iterations: int = Field(20, ge=1, le=1000, description="sinkhorn: row and column normalizations of the plan")

    def runs_read(self) -> dict[str, str]:
        return {"teacher": self.teacher}

    def build(self, trainer) -> InterventionState:
        if not trainer.info.is_classification:
            raise SpecError(self.spec_path(trainer), f"distill distills class distributions; task "
                            f"'{trainer.experiment.task.registry_name}' is regression")
        return DistillState(self)


class DistillState(InterventionState):
    parameter_copies = 1  # the teacher's parameters

    def __init__(self, spec: Distill):
        self.spec = spec
        self.whole_batches = spec.loss == "sinkhorn"  # a distance between the batch's distributions
        self.teacher: torch.nn.Module | None = None
        self.teacher_params: dict[str, torch.Tensor] = {}

    def read_run(self, trainer, reference: RunReference, experiment: Experiment, tensors: dict[str, torch.Tensor],
                 seeds: list[int], source: str) -> None:
        self.teacher = frozen_copy(trainer, experiment, tensors, seeds, source, reference.path)
        self.teacher_params = {name: p.detach() for name, p in self.teacher.named_parameters()}

    def objective(self, trainer, inputs: torch.Tensor, outputs: torch.Tensor, targets: torch.Tensor,
                  members: slice) -> torch.Tensor | None:
        if self.teacher is None:
            raise SpecError("interventions", f"distill's teacher '{self.spec.teacher}' was not loaded: train "
                            "through learnscope's runner (it reads the teacher's run from the store)")
        with torch.no_grad():
            taught = functional_call(self.teacher, {n: p[members] for n, p in self.teacher_params.items()}, (inputs,))
        spec = self.spec
        if spec.loss == "kl":
            term = distillation_kl(taught, outputs, spec.temperature, old_temperature=spec.teacher_temperature)
            term = term.reshape(term.shape[0], -1).mean(1)
        else:
            classes = outputs.shape[-1]
            teacher_t = spec.temperature if spec.teacher_temperature is None else spec.teacher_temperature
            term = sinkhorn_distance(F.softmax(outputs / spec.temperature, -1).reshape(outputs.shape[0], -1, classes),
                                     F.softmax(taught / teacher_t, -1).reshape(taught.shape[0], -1, classes),
                                     spec.epsilon, spec.iterations)
        if spec.alpha == 1:
            return term
        return (1 - spec.alpha) * trainer.loss_per_seed(outputs, targets) + spec.alpha * term


class LwFState(InterventionState):
    def __init__(self, spec: LwF, trainer):
        self.spec = spec
        self.names = [name for name, p in trainer.model.named_parameters() if p.requires_grad]
        self.params = trainer.params
        self.previous: list[torch.Tensor] | None = None  # the previous model's parameters
        self.heads: torch.Tensor | None = None  # [G, S, C] bool: the classes of each distilled softmax

    @torch.no_grad()
    def on_block(self, trainer, block: Block, previous: Block | None) -> None:
        if experience_ended(block, previous) is None:
            return
        self.previous = [p.detach().clone() for p in self.params]
        self.heads = self._heads(trainer, {b.experience for b in trainer.blocks if b.start < block.start})

    @staticmethod
    def _heads(trainer, met: set[int]) -> torch.Tensor:
        classes = trainer.info.output_dim
        if trainer.info.class_groups is not None:  # task-incremental: one softmax per earlier head
            heads = torch.zeros(len(met), trainer.members, classes, dtype=torch.bool)
            for g, e in enumerate(sorted(met)):
                heads[g, :, list(trainer.info.class_groups[e])] = True
            return heads
        known = torch.zeros(trainer.members, classes, dtype=torch.bool)
        for e in met:
            labels = trainer.data.splits[f"train/{e}"][1].cpu()
            known.scatter_(1, labels.reshape(labels.shape[0], -1), True)
        return known.unsqueeze(0)

    def loss(self, trainer, inputs: torch.Tensor, outputs: torch.Tensor, targets: torch.Tensor,
             members: slice) -> torch.Tensor | None:
        if self.previous is None:
            return None
        with torch.no_grad():
            snapshot = {name: p[members] for name, p in zip(self.names, self.previous)}
            old = functional_call(trainer.model, snapshot, (inputs,))
        heads = self.heads[:, members].to(outputs.device)
        shape = (outputs.shape[0],) + (1,) * (outputs.dim() - 2) + (outputs.shape[-1],)
        kl = sum(distillation_kl(old, outputs, self.spec.temperature, head.view(shape)) for head in heads)
        return self.spec.alpha * kl.reshape(kl.shape[0], -1).mean(1)

    def state_dict(self) -> dict[str, torch.Tensor]:
        if self.previous is None:
            return {}
        return {"heads": self.heads, **{f"previous.{i}": p for i, p in enumerate(self.previous)}}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if not state:
            return
        self.heads = state["heads"].clone()
        self.previous = [state[f"previous.{i}"].clone() for i in range(len(self.params))]
