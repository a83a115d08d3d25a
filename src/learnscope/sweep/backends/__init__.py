"""Where a sweep's trials run: the `Backend` seam.

A backend receives the trials still to do and hands back one `TrialResult`
each, in trial order. It never writes the store itself: the driver
(`learnscope.sweep`) owns the sweep record and every write, and hands the
backend a `TrialHost`. `local` asks the host to run each trial here, one
after another. `ray` ships each trial's `TrialWork` (a snapshot of what the
store holds of it) to a Ray worker, which trains it into memory and sends
its journal of writes back; the host replays the journal into the store.

A backend is one module of this package, registered with
`@registry.backends.register(NAME)`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

from learnscope import registry
from learnscope.errors import LearnscopeError
from learnscope.store.base import Op
from learnscope.sweep.grid import Trial
from learnscope.sweep.trial import TrialResult, TrialWork

__all__ = ["Backend", "TrialHost", "TrialResult", "get_backend"]


class TrialHost(ABC):
    """The driver, as a backend sees it."""

    @abstractmethod
    def finished(self, trial: Trial) -> bool:
        """Whether the store holds the trial as finished already."""

    @abstractmethod
    def run_here(self, trial: Trial) -> TrialResult:
        """Train the trial in this process, into the store."""

    @abstractmethod
    def work_of(self, trial: Trial) -> TrialWork:
        """What a worker needs to run the trial, as the store holds it now."""

    @abstractmethod
    def record(self, ops: Sequence[Op]) -> None:
        """Write a worker's journal into the store."""

    @abstractmethod
    def result(self, trial: Trial) -> TrialResult:
        """The trial as the store holds it."""

    @abstractmethod
    def announce(self, message: str) -> None:
        """Tell the user how the trials go (progress)."""


class Backend(ABC):
    name: ClassVar[str]

    def __init__(self, address: str | None = None, workers: int | None = None):
        self.address = address
        self.workers = workers
        if workers is not None and workers < 1:
            raise LearnscopeError(f"--workers {workers}: give at least 1 worker")

    def options(self) -> dict[str, Any]:
        """What the sweep records of the backend, to resume it the same way."""
        return {"backend": self.name, "address": self.address, "workers": self.workers}

    @abstractmethod
    def run(self, trials: Sequence[Trial], host: TrialHost) -> list[TrialResult]:
        """Run every trial not finished, returning every trial's result in trial order."""


def get_backend(name: str, address: str | None = None, workers: int | None = None) -> Backend:
    return registry.backends.get(name, "--backend")(address, workers)
