"""Interventions: named, parameterized changes to training at hook points.

Weight decay is the optimizer's (recipe.weight_decay) and the output scale
alpha is the model's (model.output_scale); both compose with these.

Continual-learning strategies (for streams of experiences): `joint` (the
upper bound), `ewc` and `si` (regularizers), `replay`, `power-law-rehearsal`
and `agem` (rehearsal), `lwf` (distillation).

Unlearning methods (for tasks with forget and retain splits): `finetune`,
`gradient-ascent`, `gradient-difference`, `ga-kl`, `npo`, `relabel`."""

from learnscope.interventions.distill import LwF
from learnscope.interventions.grokfast import Grokfast
from learnscope.interventions.joint import Joint
from learnscope.interventions.regularizers import EWC, SynapticIntelligence
from learnscope.interventions.rehearsal import AGEM, PowerLawRehearsal, Replay
from learnscope.interventions.unlearn import (
    NPO, Finetune, GradientAscent, GradientAscentKL, GradientDifference, Relabel,
)

__all__ = [
    "AGEM", "EWC", "NPO", "Finetune", "GradientAscent", "GradientAscentKL", "GradientDifference", "Grokfast", "Joint",
    "LwF", "PowerLawRehearsal", "Relabel", "Replay", "SynapticIntelligence",
]
