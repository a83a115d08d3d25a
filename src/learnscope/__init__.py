"""learnscope: a laboratory for how neural networks learn, generalize,
memorize and forget."""

__version__ = "0.1.0"

from learnscope import interventions, models, probes, tasks  # noqa: E402  (registers the components)
from learnscope import catalog  # noqa: E402
from learnscope.errors import LearnscopeError, SpecError  # noqa: E402
from learnscope.runner import check_signature, run_experiment, run_phenomenon  # noqa: E402
from learnscope.runs import Run  # noqa: E402
from learnscope.spec import Experiment, Recipe, load_experiment  # noqa: E402
from learnscope.store import Store  # noqa: E402
from learnscope.train import Trainer  # noqa: E402

__all__ = [
    "Experiment",
    "LearnscopeError",
    "Recipe",
    "Run",
    "SpecError",
    "Store",
    "Trainer",
    "catalog",
    "check_signature",
    "interventions",
    "load_experiment",
    "models",
    "probes",
    "run_experiment",
    "run_phenomenon",
    "tasks",
]
