"""Interventions: named, parameterized changes to training at hook points.

Weight decay is the optimizer's (recipe.weight_decay) and the output scale
alpha is the model's (model.output_scale); both compose with these."""

from learnscope.interventions.grokfast import Grokfast

__all__ = ["Grokfast"]
