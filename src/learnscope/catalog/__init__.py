"""The phenomenon catalog: one file per phenomenon."""

from learnscope.catalog.base import ArmData, Phenomenon, Verdict

__all__ = ["ArmData", "Phenomenon", "Verdict"]
