"""Where a sweep's trials run: the `Backend` seam.

A backend receives the trials still to do and hands back one `TrialResult`
each, in trial order. It never opens the store: the driver (`learnscope.sweep`)
owns the sweep record and every write, and gives the backend a `TrialRunner`,
the one thing that trains a trial and records it. `local` calls it here, one
trial after another. A distributed backend (Ray, not here yet) would ship each
trial's spec to a worker and send its metric rows, events, verdict and
checkpoints back for the driver to write (workers never open the store);
its `run` has the same signature.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar

from learnscope.errors import LearnscopeError, one_of
from learnscope.sweep.grid import Trial


@dataclass(frozen=True)
class TrialResult:
    run_id: str
    status: str  # the trial run's status after the backend is done: "finished", "failed", ...
    reason: str | None = None


TrialRunner = Callable[[Trial], TrialResult]


class Backend(ABC):
    name: ClassVar[str]

    @abstractmethod
    def run(self, trials: Sequence[Trial], run_trial: TrialRunner) -> list[TrialResult]:
        """Run every trial (through `run_trial`, or elsewhere and recorded by the
        driver), returning their results in trial order."""


class LocalBackend(Backend):
    """Every trial in this process, one after another, in grid order."""

    name = "local"

    def run(self, trials: Sequence[Trial], run_trial: TrialRunner) -> list[TrialResult]:
        return [run_trial(trial) for trial in trials]


BACKENDS: dict[str, type[Backend]] = {LocalBackend.name: LocalBackend}


def get_backend(name: str) -> Backend:
    if name not in BACKENDS:
        raise LearnscopeError(f"unknown backend '{name}'; {one_of(name, BACKENDS)} (a Ray backend is not there yet)")
    return BACKENDS[name]()
