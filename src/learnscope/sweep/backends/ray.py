"""The Ray backend: each trial a Ray task, on a local Ray instance or an existing cluster.

Workers never open SQLite, so the store stays on the driver's disk. A task
gets its trial's `TrialWork` (a snapshot of what the store holds of it),
trains it into a `MemoryStore`, and sends the journal of its writes (metric
rows, events, statuses, the verdict, checkpoints) to a `Relay` actor at each
checkpoint and status change. The driver drains the relay and replays the
journals into the store: only the driver writes it.

A worker killed mid-trial is retried by Ray (`max_retries`). The retry asks
the relay for the journal of the attempts before it, replays it over the
snapshot, and so resumes from the last checkpoint they sent, exactly as
`learnscope resume` would; it records a `trial-retry` event. A journal sent
by a dead attempt after its successor began is dropped. Trials train with
the same code as on the local backend, so the rows are the same, bit for bit.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

from learnscope import faults, registry
from learnscope.errors import LearnscopeError
from learnscope.store.base import Op
from learnscope.sweep.backends import Backend, TrialHost
from learnscope.sweep.grid import Trial
from learnscope.sweep.trial import TrialResult, TrialWork, work_on

RETRIES = 3  # attempts after the first, for a trial whose worker dies
POLL_S = 0.2  # how often the driver drains the relay while trials run
INSTALL = "the ray backend needs Ray: pip install 'learnscope[ray]' (the README's setup installs it)"


class Relay:
    """The Ray actor between the workers and the driver: it holds each trial's
    journal (for a retry to resume from) and the writes the driver has not
    taken yet. It keeps nothing on disk."""

    def __init__(self) -> None:
        self.attempts: dict[str, int] = {}
        self.journals: dict[str, list[Op]] = {}
        self.outbox: list[Op] = []

    def begin(self, run_id: str) -> tuple[int, list[Op]]:
        """A new attempt at a trial: (its number, from 1; the journal of the attempts before it)."""
        self.attempts[run_id] = self.attempts.get(run_id, 0) + 1
        return self.attempts[run_id], list(self.journals.get(run_id, []))

    def push(self, run_id: str, attempt: int, ops: list[Op]) -> bool:
        """Take an attempt's writes; an attempt that has a successor is dead, and is ignored."""
        if attempt != self.attempts.get(run_id):
            return False
        journal = self.journals.setdefault(run_id, [])
        for op in ops:
            if op[0] == "save_checkpoint":  # a retry needs only the newest checkpoint of each run
                journal[:] = [o for o in journal if not (o[0] == "save_checkpoint"
                                                         and o[1]["run_id"] == op[1]["run_id"])]
            journal.append(op)
        self.outbox.extend(ops)
        return True

    def drain(self) -> list[Op]:
        ops, self.outbox = self.outbox, []
        return ops

    def forget(self, run_id: str) -> None:
        self.journals.pop(run_id, None)


def run_remotely(work: TrialWork, relay: Any) -> TrialResult:
    """The body of a trial's Ray task."""
    import ray

    run_id = work.trial.run_id
    attempt, earlier = ray.get(relay.begin.remote(run_id))
    return work_on(work, attempt, earlier, lambda ops: ray.get(relay.push.remote(run_id, attempt, ops)))


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise LearnscopeError(INSTALL) from None
    return ray


@registry.backends.register("ray")
class RayBackend(Backend):
    name = "ray"

    def __init__(self, address: str | None = None, workers: int | None = None):
        super().__init__(address, workers)
        if address is not None and workers is not None:
            raise LearnscopeError("--workers sizes a local Ray instance; with --address the cluster's CPUs decide "
                                  "how many trials run at once")
        _ray()  # refuse a missing Ray before anything is recorded

    def _connect(self) -> bool:
        """Join the cluster at `address`, the Ray this process already runs, or
        start a local instance of `workers` CPUs; True if we started one."""
        ray = _ray()
        if ray.is_initialized():
            return False
        settings: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.ERROR,
                                    "log_to_driver": False}
        try:
            if self.address is not None:
                ray.init(address=self.address, **settings)
            else:
                ray.init(num_cpus=self.workers or os.cpu_count() or 1, **settings)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = f"the Ray cluster at {self.address}" if self.address else "a local Ray instance"
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
            raise LearnscopeError(f"cannot start or join {where}: {first}") from None
        return True

    def run(self, trials: Sequence[Trial], host: TrialHost) -> list[TrialResult]:
        ray = _ray()
        started = self._connect()
        try:
            self._run(ray, [t for t in trials if not host.finished(t)], host)
        finally:
            if started:
                ray.shutdown()
        return [host.result(trial) for trial in trials]

    def _run(self, ray: Any, trials: list[Trial], host: TrialHost) -> None:
        relay = ray.remote(num_cpus=0)(Relay).remote()
        # A failpoint armed in the driver's environment is the crash tests' way to kill a worker.
        armed = os.environ.get(faults.ENV_VAR)
        task = ray.remote(num_cpus=1, max_retries=RETRIES,
                          runtime_env={"env_vars": {faults.ENV_VAR: armed}} if armed else None)(run_remotely)
        pending = {task.remote(host.work_of(trial), relay): trial for trial in trials}
        done = 0
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_S)
                host.record(ray.get(relay.drain.remote()))
                for ref in ready:
                    trial = pending.pop(ref)
                    done += 1
                    try:
                        result = ray.get(ref)
                    except ray.exceptions.RayTaskError as exc:  # the trial raised: the sweep stops, as on local
                        raise _cause(exc) from None
                    except ray.exceptions.RayError as exc:  # its workers kept dying: the trial is left to resume
                        reason = f"its Ray workers stopped {RETRIES + 1} times ({exc.__class__.__name__})"
                        host.record([("set_status", {"run_id": trial.run_id, "status": "failed", "reason": reason})])
                        result = host.result(trial)
                    relay.forget.remote(trial.run_id)
                    host.announce(f"trial {trial.run_id} {result.status} ({done}/{len(trials)}, ray)")
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)
            host.record(ray.get(relay.drain.remote()))


def _cause(exc: Exception) -> BaseException:
    """The exception a trial raised on its worker (a LearnscopeError stays one line)."""
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, BaseException) else exc
