"""One sweep trial, trained into a store: the driver's own store (the local
backend), or a worker's `MemoryStore` whose journal goes back to the driver
(a distributed backend). The same function trains both, so both give the
same rows, bit for bit.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from learnscope import faults, registry
from learnscope.progress import TrainingProgress
from learnscope.runner import recorded_device, resume_run, run_experiment, run_phenomenon
from learnscope.spec import Experiment
from learnscope.store.base import Op, RunRecord, RunStore, this_host
from learnscope.store.memory import MemoryStore, Snapshot
from learnscope.sweep.grid import Trial
from learnscope.train.devices import resolve_device

TRIAL_EVENT = "sweep-trial"  # on a trial: its sweep, index and swept values
ATTEMPT_EVENT = "trial-attempt"  # on a trial run by a worker: which attempt, where
RETRY_EVENT = "trial-retry"  # on a trial a worker took up after the worker before it died


@dataclass(frozen=True)
class TrialResult:
    run_id: str
    status: str  # the trial run's status after the backend is done: "finished", "failed", ...
    reason: str | None = None


def run_trial(store: RunStore, sweep: RunRecord, trial: Trial, reporter: TrainingProgress, device: Any) -> TrialResult:
    """Train one trial into `store`, or finish it from its checkpoints.
    `device`: a device, or "recorded" (where the sweep last ran)."""
    existing = store.find_run(trial.run_id)
    if existing is not None and existing.status == "finished":
        return TrialResult(trial.run_id, existing.status)
    spec = sweep.spec
    if existing is not None:
        run = resume_run(trial.run_id, store, reporter, device, within=sweep.id)
    else:
        if not store.events(trial.run_id, TRIAL_EVENT):  # a trial stopped before its run was recorded has it
            store.add_event(trial.run_id, TRIAL_EVENT, {"sweep": sweep.id, "index": trial.index,
                                                        "values": trial.values})
        where = resolve_device(recorded_device(store, sweep.id)) if device == "recorded" else device
        if spec["kind"] == "phenomenon":
            run = run_phenomenon(spec["name"], spec["quick"], spec["seeds"], [*spec["overrides"], *trial.overrides],
                                 store, trial.run_id, reporter, where, parent=sweep.id)
        else:
            run = run_experiment(Experiment.model_validate(trial.spec), store, spec["name"], trial.run_id, reporter,
                                 device=where, parent=sweep.id)
    record = store.get_run(run.id)
    faults.point("trial-finished")
    return TrialResult(run.id, record.status, record.reason)


# ------------------------------------------------------------------ on a worker


@dataclass(frozen=True)
class TrialWork:
    """What a worker needs to run one trial: the sweep's record, the trial, a
    snapshot of what the store holds of it, where to train, and the plugins
    the driver loaded (targets for `load_plugin`)."""

    sweep: RunRecord
    trial: Trial
    snapshot: Snapshot
    device: str
    plugins: tuple[str, ...] = ()


def trial_work(store: RunStore, sweep: RunRecord, trial: Trial, device: Any) -> TrialWork:
    """The work of a trial as the driver's store holds it now."""
    sources = [source for source in _sources(trial) if not source.startswith(trial.run_id)]
    snapshot = Snapshot.of(store, [trial.run_id], alone=[sweep.id, *sources], held=[sweep.id])
    return TrialWork(sweep, trial, snapshot, str(device), tuple(registry.loaded_plugins()))


def _sources(trial: Trial) -> list[str]:
    """Runs outside the trial its experiments read (`init_from` a run id, a teacher)."""
    specs = trial.spec.get("arms", {}).values() if "arms" in trial.spec else [trial.spec]
    return [reference.source for spec in specs for reference in Experiment.model_validate(spec).runs_read()
            if not reference.source.startswith("@")]


def work_on(work: TrialWork, attempt: int, earlier: Sequence[Op], send: Callable[[list[Op]], None]) -> TrialResult:
    """Run a trial in this process into memory, sending its journal to the
    driver through `send`. `earlier`: the journal of the attempts before this
    one (whose workers died), replayed first, so the trial resumes from the
    last checkpoint they sent."""
    for target in work.plugins:
        registry.load_plugin(target)
    store = MemoryStore(work.snapshot, sink=send)
    store.replay(earlier)
    run_id = work.trial.run_id
    where = {"attempt": attempt, "host": this_host(), "pid": os.getpid()}
    store.add_event(run_id, ATTEMPT_EVENT, where)
    if attempt > 1:
        store.add_event(run_id, RETRY_EVENT, {**where, "checkpoints": store.checkpoint_steps(),
                                              "why": f"the worker running attempt {attempt - 1} stopped"})
    store.flush()
    result = run_trial(store, work.sweep, work.trial, TrainingProgress(enabled=False), work.device)
    store.flush()
    return result
