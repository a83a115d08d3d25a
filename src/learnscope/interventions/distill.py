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
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field
from torch.func import functional_call

from learnscope import registry
from learnscope.tasks.base import Block
from learnscope.train.hooks import Intervention, InterventionState, StreamBudget, experience_ended


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


def distillation_kl(old: torch.Tensor, new: torch.Tensor, distilled: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(softmax(old/T) ‖ softmax(new/T)) over the classes `distilled` (bool,
    broadcast against the logits [..., C]), per example: [...]."""
    def log_softmax(logits):
        return F.log_softmax(logits.masked_fill(~distilled, float("-inf")) / temperature, -1).masked_fill(~distilled, 0)

    log_old, log_new = log_softmax(old), log_softmax(new)
    return (log_old.exp() * distilled * (log_old - log_new)).sum(-1)


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
        kl = sum(distillation_kl(old, outputs, head.view(shape), self.spec.temperature) for head in heads)
        return self.spec.alpha * self.spec.temperature ** 2 * kl.reshape(kl.shape[0], -1).mean(1)

    def state_dict(self) -> dict[str, torch.Tensor]:
        if self.previous is None:
            return {}
        return {"heads": self.heads, **{f"previous.{i}": p for i, p in enumerate(self.previous)}}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if not state:
            return
        self.heads = state["heads"].clone()
        self.previous = [state[f"previous.{i}"].clone() for i in range(len(self.params))]
