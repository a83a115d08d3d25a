"""The phenomenon catalog: one file per phenomenon."""

from learnscope.catalog.base import ArmData, Phenomenon, Verdict
from learnscope.catalog import grokking  # noqa: F401  (registers the phenomenon)
from learnscope.catalog import grokfast  # noqa: F401  (registers the phenomenon)
from learnscope.catalog import lazy_rich  # noqa: F401  (registers the phenomenon)
from learnscope.catalog import neural_collapse  # noqa: F401  (registers the phenomenon)
from learnscope.catalog import catastrophic_forgetting  # noqa: F401  (registers the phenomenon)
from learnscope.catalog import ewc  # noqa: F401  (registers the phenomenon)
from learnscope.catalog import replay  # noqa: F401  (registers the phenomenon)
from learnscope.catalog import power_law_rehearsal  # noqa: F401  (registers the phenomenon)
from learnscope.catalog import stability_gap  # noqa: F401  (registers the phenomenon)
from learnscope.catalog import continual_strategies  # noqa: F401  (registers the phenomenon)
from learnscope.catalog import unlearning_privacy  # noqa: F401  (registers the phenomenon)
from learnscope.catalog import ga_collapse  # noqa: F401  (registers the phenomenon)
from learnscope.catalog import npo_vs_ga  # noqa: F401  (registers the phenomenon)
from learnscope.catalog import unlearning_methods  # noqa: F401  (registers the phenomenon)
from learnscope.catalog import unlearning_scalability  # noqa: F401  (registers the phenomenon)
from learnscope.catalog import unlearning_sustainability  # noqa: F401  (registers the phenomenon)

__all__ = ["ArmData", "Phenomenon", "Verdict"]
