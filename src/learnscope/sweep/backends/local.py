"""The local backend: every trial in this process, one after another, in grid order."""

from __future__ import annotations

from collections.abc import Sequence

from learnscope import registry
from learnscope.errors import LearnscopeError
from learnscope.sweep.backends import Backend, TrialHost
from learnscope.sweep.grid import Trial
from learnscope.sweep.trial import TrialResult


@registry.backends.register("local")
class LocalBackend(Backend):
    name = "local"

    def __init__(self, address: str | None = None, workers: int | None = None):
        if address is not None or workers is not None:
            raise LearnscopeError("--address and --workers apply to --backend ray; the local backend runs the "
                                  "trials one after another in this process")
        super().__init__()

    def run(self, trials: Sequence[Trial], host: TrialHost) -> list[TrialResult]:
        return [host.result(trial) if host.finished(trial) else host.run_here(trial) for trial in trials]
