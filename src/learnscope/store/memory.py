"""A store in memory, for a Ray worker: one sweep trial, and a journal of its writes.

A worker never opens SQLite. It starts from a `Snapshot` the driver read
from the store (the trial's runs, events, metric rows and checkpoints, and
the runs it reads from: the sweep, an `init_from` source), then trains
through the runner as the driver would, into a `MemoryStore`. Every write is
also journaled: a list of `(method, arguments)` that `RunStore.replay`
performs on another store. The worker sends the journal to the driver as it
goes (`sink`, at each checkpoint and status change), and the driver replays
it into the store. A retried worker replays the journal of the attempts
before it over the snapshot, and so resumes from their last checkpoint.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from learnscope import faults
from learnscope.errors import LearnscopeError, NotFoundError
from learnscope.store.base import STATUSES, Op, RunRecord, RunStore, as_seen, concat_metrics, metric_frame, this_host
from learnscope.store.checkpoints import checkpoint_step
from learnscope.version import __version__

if TYPE_CHECKING:  # pandas loads when metrics are first read into a frame, not with the store
    import pandas as pd


@dataclass
class RunCopy:
    """One run as a snapshot carries it."""

    record: dict[str, Any]
    events: list[dict[str, Any]] = field(default_factory=list)
    rows: list[tuple[int, int, str, float]] = field(default_factory=list)  # seed, step, name, value
    checkpoint: bytes | None = None


@dataclass
class Snapshot:
    """What a worker needs of the store: copies of some runs; `held`, the runs
    the driver holds while the worker works (the sweep)."""

    runs: dict[str, RunCopy]
    held: list[str]

    @classmethod
    def of(cls, store: RunStore, trees: Sequence[str], alone: Sequence[str] = (), held: Sequence[str] = ()) -> Snapshot:
        """Copies of the runs in `trees` with the runs below them, and of the
        runs in `alone` without theirs; runs not in `store` are left out."""
        runs: dict[str, RunCopy] = {}
        todo = [(run_id, True) for run_id in trees] + [(run_id, False) for run_id in alone]
        while todo:
            run_id, below = todo.pop(0)
            if run_id in runs or not store.has_run(run_id):
                continue
            found = store.checkpoint_data(run_id)
            rows = store.metrics(run_id)[["seed", "step", "name", "value"]].itertuples(index=False, name=None)
            runs[run_id] = RunCopy(asdict(store.get_run(run_id)), store.events(run_id),
                                   [(int(a), int(b), str(c), float(d)) for a, b, c, d in rows],
                                   None if found is None else found[0])
            if below:
                todo.extend((child.id, True) for child in store.children(run_id))
        return cls(runs, list(held))


class MemoryStore(RunStore):
    def __init__(self, snapshot: Snapshot | None = None, sink: Callable[[list[Op]], None] | None = None):
        self.where = f"the memory of process {os.getpid()} on {this_host()}"
        self._records: dict[str, RunRecord] = {}
        self._events: dict[str, list[dict[str, Any]]] = {}
        self._rows: dict[str, list[tuple[int, int, str, float]]] = {}
        self._checkpoints: dict[str, tuple[int, bytes]] = {}  # run -> (step, file bytes)
        self._held: set[str] = set()
        self.journal: list[Op] = []
        self._sink = sink
        self._recording = True
        if snapshot is not None:
            for run_id, copy in snapshot.runs.items():
                self._records[run_id] = RunRecord(**copy.record)
                self._events[run_id] = [dict(e) for e in copy.events]
                self._rows[run_id] = [tuple(r) for r in copy.rows]  # type: ignore[misc]
                if copy.checkpoint is not None:
                    self._checkpoints[run_id] = (checkpoint_step(copy.checkpoint), copy.checkpoint)
            self._held.update(snapshot.held)

    # ------------------------------------------------------------ the journal

    def _journal(self, method: str, **arguments: Any) -> None:
        if self._recording:
            self.journal.append((method, arguments))

    def flush(self) -> None:
        """Send what was journaled since the last flush to the sink."""
        if self._sink is not None and self.journal:
            ops, self.journal = self.journal, []
            self._sink(ops)

    def replay(self, ops: Sequence[Op]) -> None:
        """Perform writes journaled elsewhere, without journaling them again."""
        self._recording = False
        try:
            super().replay(ops)
        finally:
            self._recording = True

    # ------------------------------------------------------------ ownership

    @contextmanager
    def hold(self, run_id: str) -> Iterator[None]:
        if run_id in self._held:
            raise LearnscopeError(f"run '{run_id}' is being run right now by this process")
        self._held.add(run_id)
        try:
            yield
        finally:
            self._held.discard(run_id)

    def check_room(self, needed_bytes: int) -> None:
        """The driver's disk takes the run; a worker keeps one trial in memory."""

    # ------------------------------------------------------------ writing

    def has_run(self, run_id: str) -> bool:
        return run_id in self._records

    def create_run(self, run_id: str, name: str, spec: dict[str, Any], seeds: Sequence[int], kind: str = "experiment",
                   parent: str | None = None, arm: str | None = None, at: float | None = None,
                   host: str | None = None) -> None:
        if self.has_run(run_id):
            raise LearnscopeError(f"run id '{run_id}' is already in the store; choose another --run-id")
        at = time.time() if at is None else at
        host = host or this_host()
        self._records[run_id] = RunRecord(run_id, name, kind, parent, arm, spec, list(seeds), "running", None, at, None,
                                          __version__, host)
        self._journal("create_run", run_id=run_id, name=name, spec=spec, seeds=list(seeds), kind=kind, parent=parent,
                      arm=arm, at=at, host=host)

    def set_status(self, run_id: str, status: str, reason: str | None = None, at: float | None = None) -> None:
        assert status in STATUSES, status
        at = time.time() if at is None else at
        record = self.get_run(run_id)
        self._records[run_id] = RunRecord(**{**asdict(record), "status": status, "reason": reason,
                                             "finished": at if status != "running" else None})
        self._journal("set_status", run_id=run_id, status=status, reason=reason, at=at)
        self.flush()

    def write_metrics(self, run_id: str, step: int, seeds: Sequence[int], metrics: dict[str, Sequence[float]]) -> None:
        self.get_run(run_id)
        rows = self._rows.setdefault(run_id, [])
        rows.extend((seed, step, name, float(v)) for name, values in metrics.items() for seed, v in zip(seeds, values))
        self._journal("write_metrics", run_id=run_id, step=step, seeds=list(seeds),
                      metrics={name: [float(v) for v in values] for name, values in metrics.items()})

    def discard_from(self, run_id: str, step: int) -> None:
        self._rows[run_id] = [r for r in self._rows.get(run_id, []) if r[1] < step]
        self._events[run_id] = [e for e in self._events.get(run_id, []) if e["step"] is None or e["step"] < step]
        self._journal("discard_from", run_id=run_id, step=step)

    def add_event(self, run_id: str, kind: str, detail: dict[str, Any], seed: int | None = None,
                  step: int | None = None, at: float | None = None) -> None:
        at = time.time() if at is None else at
        self._events.setdefault(run_id, []).append(dict(seed=seed, step=step, kind=kind, detail=detail, time=at))
        self._journal("add_event", run_id=run_id, kind=kind, detail=detail, seed=seed, step=step, at=at)

    def save_checkpoint(self, run_id: str, step: int, data: bytes) -> None:
        self._checkpoints[run_id] = (step, data)
        self._journal("save_checkpoint", run_id=run_id, step=step, data=data)
        self.flush()
        faults.point("worker-checkpoint")  # sent to the driver; a worker killed here is retried from it

    def checkpoint_data(self, run_id: str) -> tuple[bytes, str] | None:
        found = self._checkpoints.get(run_id)
        return None if found is None else (found[1], f"of run '{run_id}' in {self.where}")

    def checkpoint_steps(self) -> dict[str, int]:
        """The step of each run's checkpoint."""
        return {run_id: step for run_id, (step, _) in self._checkpoints.items()}

    # ------------------------------------------------------------ reading

    def _owned(self, run_id: str) -> bool:
        """Whether this process or the driver holds the run or a run above it."""
        at: str | None = run_id
        while at is not None:
            if at in self._held:
                return True
            above = self._records.get(at)
            at = above.parent if above is not None else None
        return False

    def get_run(self, run_id: str) -> RunRecord:
        record = self._records.get(run_id)
        if record is None:
            raise NotFoundError(f"unknown run id '{run_id}' in {self.where}")
        return as_seen(record, self._owned(run_id))

    def children(self, run_id: str) -> list[RunRecord]:
        found = [r for r in self._records.values() if r.parent == run_id]
        return [self.get_run(r.id) for r in sorted(found, key=lambda r: (r.created, r.id))]

    def metrics(self, run_ids: str | Sequence[str]) -> pd.DataFrame:
        ids = [run_ids] if isinstance(run_ids, str) else list(run_ids)
        for run_id in ids:
            self.get_run(run_id)
        return concat_metrics([metric_frame(run_id, self._rows.get(run_id, [])) for run_id in ids])

    def events(self, run_id: str, kind: str | None = None) -> list[dict[str, Any]]:
        return [dict(e) for e in self._events.get(run_id, []) if kind is None or e["kind"] == kind]
