"""What a run store is to the code that trains runs and reads them back: `RunStore`.

There are two. `Store` (learnscope.store.sqlite) is the store: one SQLite
file, checkpoints beside it. `MemoryStore` (learnscope.store.memory) holds
one sweep trial in a Ray worker's memory and journals every write, for the
driver to replay into the store: workers never open SQLite. The runner
trains through either without knowing which.
"""

from __future__ import annotations

import platform
import re
import secrets
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from learnscope.errors import LearnscopeError, one_of

if TYPE_CHECKING:  # pandas loads when metrics are first read into a frame, not with the store
    import pandas as pd

STATUSES = ("running", "finished", "failed", "interrupted")
STOPPED = "the process running it stopped before it finished (killed or crashed); `learnscope resume {run}` continues it"
# Runs learnscope trains are experiments or phenomena (their arms are experiments); a run that
# ls.watch recorded in the user's own training loop is a "watch": its spec describes the
# loop (probes, data sizes, model class), not an Experiment, and it cannot be resumed. A
# "sweep" holds no metrics: its spec holds the grid, its children are its trials (ordinary
# experiment or phenomenon runs, ids SWEEP.tN).
KINDS = ("experiment", "phenomenon", "watch", "sweep")
WATCH = "watch"
STOPPED_WATCH = "the process watching it stopped before the watch was closed (killed or crashed)"
METRIC_COLUMNS = ["run_id", "seed", "step", "name", "value"]
# One write, as a journal holds it: the RunStore method and its keyword arguments.
Op = tuple[str, dict[str, Any]]
JOURNALED = ("create_run", "set_status", "write_metrics", "discard_from", "add_event", "save_checkpoint")


@dataclass(frozen=True)
class RunRecord:
    id: str
    name: str
    kind: str  # one of KINDS: "experiment", "phenomenon", "watch" or "sweep"
    parent: str | None
    arm: str | None
    spec: dict[str, Any]
    seeds: list[int]
    status: str
    reason: str | None
    created: float
    finished: float | None
    version: str
    host: str


RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
RUN_ID_RULE = ("letters, digits, '.', '_' and '-', starting with a letter or digit, at most 200 characters, "
               "no '..'")


def new_run_id(name: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip(".-_")[:120] or "run"
    return f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def check_run_id(run_id: str) -> str:
    """A run id names files (checkpoints, locks, reports): refuse one that could
    not, or that would reach outside the store."""
    if not RUN_ID.fullmatch(run_id) or ".." in run_id:
        shown = repr(run_id) if run_id else "an empty id"
        raise LearnscopeError(f"run id {shown} is not allowed: a run id holds {RUN_ID_RULE}")
    return run_id


def run_id_for(run_id: str | None, name: str) -> str:
    """The id a new run gets: the one asked for, checked, else a new one from its name."""
    return new_run_id(name) if run_id is None else check_run_id(run_id)


def this_host() -> str:
    return platform.node()


def as_seen(record: RunRecord, owned: bool) -> RunRecord:
    """A run recorded as running whose owner is gone was stopped before it
    finished: it reads back as interrupted until it is resumed."""
    if record.status != "running" or owned:
        return record
    reason = STOPPED_WATCH if record.kind == WATCH else STOPPED.format(run=record.parent or record.id)
    return replace(record, status="interrupted", reason=reason)


def metric_frame(run_id: str, rows: Sequence[tuple[int, int, str, float]]) -> pd.DataFrame:
    """One run's metric rows (seed, step, name, value) as the stores hand them back."""
    import numpy as np
    import pandas as pd

    seed, step, name, value = zip(*rows) if rows else ((), (), (), ())
    return pd.DataFrame({
        "run_id": run_id,
        "seed": np.array(seed, dtype=np.int64),
        "step": np.array(step, dtype=np.int64),
        "name": pd.array(name, dtype=object),
        "value": np.array(value, dtype=float),
    })


def concat_metrics(frames: list[pd.DataFrame]) -> pd.DataFrame:
    import pandas as pd

    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=METRIC_COLUMNS)


class RunStore(ABC):
    """Runs, their metric rows, events and last checkpoint. `at` and `host`
    (where a method takes them) say when and where a write happened, when it
    happened elsewhere: a journal replayed from a worker keeps its times."""

    @abstractmethod
    def hold(self, run_id: str) -> AbstractContextManager[None]:
        """Own a top-level run for the duration: refuse if another live process owns it."""

    @abstractmethod
    def check_room(self, needed_bytes: int) -> None:
        """Refuse, before any work, a store that cannot take a new run."""

    @abstractmethod
    def has_run(self, run_id: str) -> bool: ...

    def find_run(self, run_id: str) -> RunRecord | None:
        """The run's record, or None if the store does not hold it."""
        return self.get_run(run_id) if self.has_run(run_id) else None

    @abstractmethod
    def create_run(self, run_id: str, name: str, spec: dict[str, Any], seeds: Sequence[int], kind: str = "experiment",
                   parent: str | None = None, arm: str | None = None, at: float | None = None,
                   host: str | None = None) -> None: ...

    @abstractmethod
    def set_status(self, run_id: str, status: str, reason: str | None = None, at: float | None = None) -> None: ...

    @abstractmethod
    def write_metrics(self, run_id: str, step: int, seeds: Sequence[int], metrics: dict[str, Sequence[float]]) -> None:
        """All metrics of one probe step, at once."""

    @abstractmethod
    def discard_from(self, run_id: str, step: int) -> None:
        """Drop the metric rows and events a run recorded at `step` or later: the
        work of a stopped process after the checkpoint it is resumed from."""

    @abstractmethod
    def add_event(self, run_id: str, kind: str, detail: dict[str, Any], seed: int | None = None,
                  step: int | None = None, at: float | None = None) -> None: ...

    @abstractmethod
    def save_checkpoint(self, run_id: str, step: int, data: bytes) -> None:
        """Keep `data` (a checkpoint file's bytes) as the run's checkpoint, in
        place of the previous one."""

    @abstractmethod
    def checkpoint_data(self, run_id: str) -> tuple[bytes, str] | None:
        """(the bytes of the run's checkpoint, verified; where they are, for
        messages), or None if the run has none."""

    @abstractmethod
    def get_run(self, run_id: str) -> RunRecord: ...

    @abstractmethod
    def children(self, run_id: str) -> list[RunRecord]: ...

    @abstractmethod
    def metrics(self, run_ids: str | Sequence[str]) -> pd.DataFrame:
        """Metric rows of one or more runs: run_id, seed, step, name, value,
        run by run in the order they were written (step order)."""

    @abstractmethod
    def events(self, run_id: str, kind: str | None = None) -> list[dict[str, Any]]:
        """A run's events in the order they were recorded: seed, step, kind, detail, time."""

    def replay(self, ops: Sequence[Op]) -> None:
        """Perform writes journaled by another store (a worker's `MemoryStore`), in order."""
        for method, arguments in ops:
            if method not in JOURNALED:
                raise LearnscopeError(f"a journal holds '{method}', which is not a store write; {one_of(method, JOURNALED)}")
            getattr(self, method)(**arguments)

    def diverged(self, run_id: str) -> dict[int, int]:
        """Seeds of a run that diverged (and were frozen): seed -> step."""
        return {e["seed"]: e["step"] for e in self.events(run_id, "diverged")}
