"""Tasks: data with named splits, generated deterministically per seed."""

from learnscope.tasks.base import Dataset, Task, TaskInfo
from learnscope.tasks.gaussian_mixture import GaussianMixture
from learnscope.tasks.modular_arithmetic import ModularArithmetic
from learnscope.tasks.teacher_student import TeacherStudent

__all__ = ["Dataset", "GaussianMixture", "ModularArithmetic", "Task", "TaskInfo", "TeacherStudent"]
