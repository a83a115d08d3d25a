"""Models: seed ensembles built from stacked layers, with named sites."""

from learnscope.models.base import Capture, EnsembleModel, Model
from learnscope.models.mlp import MLP
from learnscope.models.transformer import Transformer

__all__ = ["MLP", "Capture", "EnsembleModel", "Model", "Transformer"]
