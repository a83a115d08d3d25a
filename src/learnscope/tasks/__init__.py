"""Tasks: data with named splits, generated deterministically per seed."""

from learnscope.tasks.base import Dataset, Task, TaskInfo
from learnscope.tasks.digits import Digits
from learnscope.tasks.facts import Facts
from learnscope.tasks.forget_set import ForgetSet
from learnscope.tasks.gaussian_mixture import GaussianMixture
from learnscope.tasks.image_files import ImageFiles
from learnscope.tasks.modular_arithmetic import ModularArithmetic
from learnscope.tasks.streams import PermutedStream, SplitStream
from learnscope.tasks.teacher_student import TeacherStudent

__all__ = [
    "Dataset",
    "Digits",
    "Facts",
    "ForgetSet",
    "GaussianMixture",
    "ImageFiles",
    "ModularArithmetic",
    "PermutedStream",
    "SplitStream",
    "Task",
    "TaskInfo",
    "TeacherStudent",
]
