"""Training: the seed-ensemble trainer, data sampling, optimizers, hooks."""

from learnscope.train.hooks import Intervention, InterventionState
from learnscope.train.trainer import Trainer

__all__ = ["Intervention", "InterventionState", "Trainer"]
