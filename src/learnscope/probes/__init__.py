"""Probes: named measurements, one value per seed."""

from learnscope.probes.base import Needs, Probe, ProbeContext
from learnscope.probes.geometry import EffectiveRank, KernelAlignment, NeuralCollapse
from learnscope.probes.memorization import ExactMatch
from learnscope.probes.performance import Accuracy, Loss
from learnscope.probes.privacy import MembershipAUC
from learnscope.probes.weights import RelativeWeightChange, WeightNorm

__all__ = [
    "Accuracy",
    "EffectiveRank",
    "ExactMatch",
    "KernelAlignment",
    "Loss",
    "MembershipAUC",
    "Needs",
    "NeuralCollapse",
    "Probe",
    "ProbeContext",
    "RelativeWeightChange",
    "WeightNorm",
]
