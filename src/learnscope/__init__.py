"""learnscope: a laboratory for how neural networks learn, generalize,
memorize and forget.

The names below load on first use, so importing one part of the package
(`learnscope.spec`, `learnscope.probes.geometry`) never loads the rest.
"""

from __future__ import annotations

import importlib
from typing import Any

from learnscope.version import __version__ as __version__

# public name -> the module that defines it
_EXPORTS = {
    "Arm": "learnscope.catalog.base",
    "Experiment": "learnscope.spec",
    "LearnscopeError": "learnscope.errors",
    "Phenomenon": "learnscope.catalog.base",
    "Recipe": "learnscope.spec",
    "Run": "learnscope.runs",
    "SpecError": "learnscope.errors",
    "Store": "learnscope.store.sqlite",
    "Trainer": "learnscope.train.trainer",
    "check_signature": "learnscope.runner",
    "compare_runs": "learnscope.compare",
    "load_experiment": "learnscope.spec",
    "load_plugin": "learnscope.registry",
    "report_run": "learnscope.report",
    "run_experiment": "learnscope.runner",
    "run_phenomenon": "learnscope.runner",
    "watch": "learnscope.watching",
}
_SUBPACKAGES = ("catalog", "interventions", "models", "probes", "registry", "store", "tasks", "train")

__all__ = sorted([*_EXPORTS, *_SUBPACKAGES])


def __getattr__(name: str) -> Any:
    if name in _SUBPACKAGES:
        return importlib.import_module(f"learnscope.{name}")
    if name in _EXPORTS:
        module = importlib.import_module(_EXPORTS[name])
        value = getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'learnscope' has no attribute '{name}'")


def __dir__() -> list[str]:
    return __all__
