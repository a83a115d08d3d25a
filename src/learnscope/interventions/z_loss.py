"""z-loss: coefficient * log^2 Z added to the loss, Z the normalizer of the
output softmax (sum of exp of the output logits). PaLM ("PaLM: Scaling
Language Modeling with Pathways") adds it with coefficient 1e-4 to keep
log Z near 0; Wortsman et al. ("Small-scale proxies for large-scale
Transformer training instabilities") find that it removes the output-logit
divergence at high learning rates. The term is averaged as the task loss
is: over an example's scored positions, then over the pass's examples, per
seed (probes.stability.log_z; the probe `output_log_z` reports the same
mean of log^2 Z). Classification and sequence tasks only.
"""

from __future__ import annotations

import torch
from pydantic import Field

from learnscope import registry
from learnscope.errors import SpecError
from learnscope.probes.stability import log_z
from learnscope.train.hooks import Intervention, InterventionState


@registry.interventions.register("z-loss")
class ZLoss(Intervention):
    coefficient: float = Field(1e-4, ge=0, description="weight of the mean log^2 Z of the outputs in the loss "
                               "(PaLM: 1e-4)")

    def build(self, trainer) -> InterventionState:
        if not trainer.info.is_classification:
            raise SpecError(self.spec_path(trainer), f"z-loss penalizes the log-normalizer of a softmax over "
                            f"classes; task '{trainer.experiment.task.registry_name}' is regression")
        return ZLossState(self.coefficient)


class ZLossState(InterventionState):
    parameter_copies = 0

    def __init__(self, coefficient: float):
        self.coefficient = coefficient

    def loss(self, trainer, inputs: torch.Tensor, outputs: torch.Tensor, targets: torch.Tensor,
             members: slice) -> torch.Tensor | None:
        if self.coefficient == 0:
            return None
        return self.coefficient * log_z(trainer.info, outputs, targets, power=2).mean(1)
