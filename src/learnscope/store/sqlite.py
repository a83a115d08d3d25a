"""The run store: one SQLite file in WAL mode, checkpoints and reports
beside it. Every figure and table is made from what is here.

Tables: runs (id, name, kind, parent, arm, spec JSON, status, reason, times,
package version, host), metrics (run, seed, step, name, value), events
(run, seed, step, kind, detail JSON), artifacts (run, kind, path, sha256).
A phenomenon run is a parent whose arms (e.g. the grokking run and its
control) are child runs.

The process running a top-level run holds an exclusive lock on
`locks/RUN.lock` (flock: the kernel drops it when the process dies, however
it dies). A run recorded as running whose lock nobody holds was stopped
before it finished, and reads back as `interrupted` until it is resumed.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import platform
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from learnscope import faults
from learnscope.errors import LearnscopeError, NotFoundError, did_you_mean
from learnscope.store.base import (
    KINDS,
    STATUSES,
    WATCH,
    RunRecord,
    RunStore,
    as_seen,
    check_run_id,
    concat_metrics,
    metric_frame,
    new_run_id,
    this_host,
)
from learnscope.version import __version__

if TYPE_CHECKING:  # pandas loads when metrics are first read into a frame, not with the store
    import pandas as pd

__all__ = ["KINDS", "WATCH", "RunRecord", "Store", "new_run_id", "resolve_store_dir"]

DEFAULT_DIR = "learnscope-runs"
ENV_VAR = "LEARNSCOPE_STORE"
SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    key INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    parent TEXT REFERENCES runs(id),
    arm TEXT,
    spec TEXT NOT NULL,
    seeds TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    created REAL NOT NULL,
    finished REAL,
    version TEXT NOT NULL,
    host TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_parent ON runs(parent);
CREATE TABLE IF NOT EXISTS metrics (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    seed INTEGER NOT NULL,
    step INTEGER NOT NULL,
    value REAL
);
CREATE VIEW IF NOT EXISTS metric_rows AS
    SELECT runs.id AS run_id, metrics.seed, metrics.step, metrics.name, metrics.value
    FROM metrics JOIN runs ON runs.key = metrics.id >> 32;
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    run TEXT NOT NULL,
    seed INTEGER,
    step INTEGER,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL,
    time REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS events_run ON events(run);
CREATE TABLE IF NOT EXISTS artifacts (
    run TEXT NOT NULL,
    kind TEXT NOT NULL,
    path TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    PRIMARY KEY (run, path)
);
"""
# Metric rows are the bulk of a store. Row ids are (run key << 32) + the row's
# number within the run, so a run's rows form one contiguous range of the
# table's own B-tree: written in step order by the run's one writer, read by a
# range scan, with no index to maintain (an index on the run made every
# probe-step transaction a third slower). `metric_rows` shows them with run ids.
ROW_BITS = 32
CHECKPOINT = "checkpoint"  # the artifact kind of a checkpoint file
SCHEMA_VERSION = 1
RUN_COLUMNS = "id, name, kind, parent, arm, spec, seeds, status, reason, created, finished, version, host"


def resolve_store_dir(path: str | os.PathLike | None = None) -> Path:
    return Path(path or os.environ.get(ENV_VAR) or DEFAULT_DIR)


OPEN_TIMEOUT_S = 60


def _while_locked(step: Callable[[], object]) -> None:
    """Run `step`, again while SQLite answers "database is locked". Processes
    opening a new store at once contend for the switch to WAL and for the
    schema's write lock, and SQLite reports some of those conflicts at once
    instead of waiting in its busy handler (a reader cannot wait for a writer
    that waits for it): a bounded retry is the documented remedy."""
    deadline = time.monotonic() + OPEN_TIMEOUT_S
    pause = 0.005
    while True:
        try:
            step()
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.2)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


DAMAGED = ("malformed", "not a database", "disk i/o error", "corrupt")


def explain(exc: sqlite3.Error, db_path: Path) -> LearnscopeError:
    """SQLite's error as one line naming the file: a damaged database, one that
    is read-only here, or anything else SQLite refuses."""
    text = str(exc) or exc.__class__.__name__
    if not isinstance(exc, sqlite3.OperationalError) or any(word in text.lower() for word in DAMAGED):
        return LearnscopeError(
            f"the store database {db_path} is damaged ({text}); nothing was changed. Keep a copy of it aside, "
            f"then check it with `sqlite3 {db_path} 'PRAGMA quick_check'` (the sqlite3 shell's .recover salvages "
            f"what it can into a new file)")
    if "readonly" in text.lower() or "read-only" in text.lower():
        return LearnscopeError(f"the store at {db_path.parent} is read-only here ({text}): reading works, writing "
                               f"a run needs write access; pass --store DIR for new runs")
    return LearnscopeError(f"the store database {db_path}: {text}")


class _Rows(list):
    """A query's rows, fetched at once (SQLite finds damage while stepping
    through them): the parts of a cursor the store uses."""

    def fetchone(self) -> Any:
        return self[0] if self else None

    def fetchall(self) -> list:
        return list(self)


class GuardedConnection:
    """The one path to the database: every statement's SQLite error becomes one
    line naming the file (`explain`)."""

    def __init__(self, conn: sqlite3.Connection, db_path: Path):
        self.raw = conn
        self.db_path = db_path

    def execute(self, sql: str, parameters: Sequence[Any] = ()) -> _Rows:
        try:
            return _Rows(self.raw.execute(sql, parameters).fetchall())
        except sqlite3.Error as exc:
            raise explain(exc, self.db_path) from None

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        try:
            self.raw.executemany(sql, rows)
        except sqlite3.Error as exc:
            raise explain(exc, self.db_path) from None

    @property
    def in_transaction(self) -> bool:
        return self.raw.in_transaction

    def close(self) -> None:
        self.raw.close()


def _roll_back_open(conn: sqlite3.Connection | GuardedConnection) -> None:
    """Roll back the connection's open transaction, if it has one (a failed
    COMMIT leaves it open; a failed BEGIN opened none)."""
    if conn.in_transaction:
        conn.execute("ROLLBACK")


class Store(RunStore):
    """`create=False`: the store must exist (reading it); a store directory this
    process cannot write is then opened read-only, and reads work."""

    def __init__(self, directory: str | os.PathLike | None = None, create: bool = True):
        self.dir = resolve_store_dir(directory)
        self.db_path = self.dir / "runs.db"
        if not create and not self.db_path.exists():
            raise NotFoundError(f"no store at {self.dir} (no runs.db); pass --store DIR or set {ENV_VAR}")
        self._refuse_lost_database()
        self.read_only = not create and not (os.access(self.dir, os.W_OK) and os.access(self.db_path, os.W_OK))
        self._next_row: dict[str, int] = {}
        try:
            if self.read_only:
                raw = self._connect_read_only()
            else:
                self.dir.mkdir(parents=True, exist_ok=True)
                raw = sqlite3.connect(self.db_path, timeout=OPEN_TIMEOUT_S, isolation_level=None)
                _while_locked(lambda: raw.execute("PRAGMA journal_mode=WAL"))
                raw.execute("PRAGMA synchronous=NORMAL")
                raw.execute(f"PRAGMA busy_timeout={OPEN_TIMEOUT_S * 1000}")
            self.conn = GuardedConnection(raw, self.db_path)
            if self.read_only:
                self._check_schema(raw)
            else:
                _while_locked(lambda: self._ensure_schema(raw))
        except sqlite3.Error as exc:
            if self.dir.is_dir() and not self.read_only:
                self._check_writable()  # the usual cause, named plainly
            raise explain(exc, self.db_path) from None
        except OSError as exc:
            raise LearnscopeError(f"cannot open the store at {self.dir}: {exc.strerror or exc}") from None

    def _refuse_lost_database(self) -> None:
        """An empty runs.db beside checkpoints is a lost database, not a new store."""
        if not self.db_path.exists() or self.db_path.stat().st_size > 0:
            return
        kept = self.dir / "checkpoints"
        runs = sorted(p.name for p in kept.iterdir()) if kept.is_dir() else []
        if runs:
            raise LearnscopeError(
                f"the store database {self.db_path} is empty (0 bytes) while checkpoints of {len(runs)} run(s) "
                f"sit beside it ({', '.join(runs[:3])}{', ...' if len(runs) > 3 else ''}): the database was truncated "
                f"or replaced; restore it from a copy (the checkpoints do not hold the runs' records and metrics)")

    def _connect_read_only(self) -> sqlite3.Connection:
        """A database in a directory we cannot write: with its -wal and -shm files,
        SQLite reads it read-only; without them every write was checkpointed into
        the file, which no writer can change here, so it is read as immutable."""
        wal = [self.db_path.with_name(self.db_path.name + suffix) for suffix in ("-wal", "-shm")]
        mode = "mode=ro" if all(p.exists() for p in wal) else "mode=ro&immutable=1"
        return sqlite3.connect(f"{self.db_path.resolve().as_uri()}?{mode}", uri=True, timeout=OPEN_TIMEOUT_S,
                               isolation_level=None)

    def _check_schema(self, raw: sqlite3.Connection) -> None:
        version = raw.execute("PRAGMA user_version").fetchone()[0]
        if version != SCHEMA_VERSION:
            raise LearnscopeError(f"the store at {self.dir} has schema version {version}; this learnscope reads "
                                  f"version {SCHEMA_VERSION}")

    def _ensure_schema(self, raw: sqlite3.Connection) -> None:
        """Create the tables and stamp the version in one write transaction, so
        processes opening a new store at once see either nothing or all of it."""
        try:
            raw.execute("BEGIN IMMEDIATE")
            version = raw.execute("PRAGMA user_version").fetchone()[0]
            tables = raw.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]
            if tables and version != SCHEMA_VERSION:
                raise LearnscopeError(
                    f"the store at {self.dir} has schema version {version}; this learnscope reads version "
                    f"{SCHEMA_VERSION}: use another --store directory"
                )
            if not tables:
                for statement in SCHEMA.split(";"):
                    if statement.strip():
                        raw.execute(statement)
                raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            raw.execute("COMMIT")
        except BaseException:
            _roll_back_open(raw)
            raise

    def close(self) -> None:
        self.conn.close()

    # ------------------------------------------------------------ writing

    def _transaction(self, sql: str, rows: Iterable[Sequence[Any]], before_commit: Callable[[], None] | None = None,
                     ) -> None:
        self._statements([(sql, rows)], before_commit)

    def _statements(self, work: Sequence[tuple[str, Iterable[Sequence[Any]]]],
                    before_commit: Callable[[], None] | None = None) -> None:
        """Several statements in one transaction (all or nothing)."""
        self._refuse_writes()
        # A Ctrl-C that lands between an earlier BEGIN and its handler leaves a
        # transaction nothing will finish: it was never committed, so roll it back.
        _roll_back_open(self.conn)
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            for sql, rows in work:
                self.conn.executemany(sql, rows)
            if before_commit is not None:
                before_commit()
            self.conn.execute("COMMIT")
        except BaseException:
            _roll_back_open(self.conn)
            raise

    # ------------------------------------------------------------ ownership

    def _lock_path(self, run_id: str) -> Path:
        return self.dir / "locks" / f"{run_id}.lock"

    @contextmanager
    def hold(self, run_id: str) -> Iterator[None]:
        """Own a top-level run for the duration: refuse if a live process owns it."""
        path = self._lock_path(run_id)
        try:
            path.parent.mkdir(exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise LearnscopeError(f"cannot write to the store at {self.dir}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.read(fd, 200).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise LearnscopeError(f"run '{run_id}' is being run right now by {owner}") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"process {os.getpid()} on {platform.node()}".encode())
        try:
            yield
        finally:
            path.unlink(missing_ok=True)
            os.close(fd)

    def _owned(self, run_id: str) -> bool:
        """Whether a live process holds the run's lock."""
        try:
            fd = os.open(self._lock_path(run_id), os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # closing drops a lock we may have taken
        return False

    def _refuse_writes(self) -> None:
        if self.read_only:
            raise LearnscopeError(f"the store at {self.dir} is read-only here: reading works, writing needs write "
                                  f"access; pass --store DIR for new runs")

    def _check_writable(self) -> None:
        try:
            with tempfile.NamedTemporaryFile(dir=self.dir, prefix=".write-test-") as f:
                f.write(b"x")
                f.flush()
        except OSError as exc:
            raise LearnscopeError(f"the store directory {self.dir} is not writable: {exc.strerror or exc}") from None

    def check_room(self, needed_bytes: int) -> None:
        """Refuse, before any work, a store directory that cannot take a new run."""
        self._check_writable()
        free = shutil.disk_usage(self.dir).free
        if free < needed_bytes:
            raise LearnscopeError(
                f"the store at {self.dir} has {free / 2**20:,.0f} MiB free and this run needs about "
                f"{needed_bytes / 2**20:,.0f} MiB (metric rows and checkpoints); free space or pass --store DIR"
            )

    def has_run(self, run_id: str) -> bool:
        return self.conn.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is not None

    def create_run(self, run_id: str, name: str, spec: dict[str, Any], seeds: Sequence[int], kind: str = "experiment",
                   parent: str | None = None, arm: str | None = None, at: float | None = None,
                   host: str | None = None) -> None:
        assert kind in KINDS, kind
        check_run_id(run_id)
        if self.has_run(run_id):
            raise LearnscopeError(f"run id '{run_id}' is already in the store at {self.dir}; choose another --run-id")
        row = (run_id, name, kind, parent, arm, json.dumps(spec), json.dumps(list(seeds)), "running", None,
               time.time() if at is None else at, None, __version__, host or this_host())
        self._transaction(f"INSERT INTO runs ({RUN_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", [row])

    def set_status(self, run_id: str, status: str, reason: str | None = None, at: float | None = None) -> None:
        assert status in STATUSES, status
        finished = (time.time() if at is None else at) if status != "running" else None
        self._transaction(
            "UPDATE runs SET status = ?, reason = ?, finished = ? WHERE id = ?", [(status, reason, finished, run_id)]
        )

    def write_metrics(self, run_id: str, step: int, seeds: Sequence[int], metrics: dict[str, Sequence[float]]) -> None:
        """All metrics of one probe step, in one transaction. One process
        writes a given run; its rows are numbered in the run's id range."""
        first = self._next_row.get(run_id)
        if first is None:
            first = self._last_row(run_id) + 1
        rows = [
            (first + i, name, seed, step, float(v))
            for i, (name, seed, v) in enumerate(
                (name, seed, v) for name, values in metrics.items() for seed, v in zip(seeds, values)
            )
        ]
        self._transaction("INSERT INTO metrics VALUES (?,?,?,?,?)", rows, lambda: faults.point("probe-write"))
        self._next_row[run_id] = first + len(rows)

    def discard_from(self, run_id: str, step: int) -> None:
        """Drop the metric rows and events a run recorded at `step` or later: the
        work of a stopped process after the checkpoint it is resumed from."""
        low, high = self._row_range(run_id)
        self._statements([
            ("DELETE FROM metrics WHERE id >= ? AND id < ? AND step >= ?", [(low, high, step)]),
            ("DELETE FROM events WHERE run = ? AND step >= ?", [(run_id, step)]),
        ])
        self._next_row.pop(run_id, None)

    def _row_range(self, run_id: str) -> tuple[int, int]:
        """[low, high): the metric row ids of a run."""
        row = self.conn.execute("SELECT key FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            self.get_run(run_id)  # raises the NotFoundError with suggestions
        return row[0] << ROW_BITS, (row[0] + 1) << ROW_BITS

    def _last_row(self, run_id: str) -> int:
        low, high = self._row_range(run_id)
        last = self.conn.execute("SELECT max(id) FROM metrics WHERE id >= ? AND id < ?", (low, high)).fetchone()[0]
        return low - 1 if last is None else last

    def add_event(self, run_id: str, kind: str, detail: dict[str, Any], seed: int | None = None,
                  step: int | None = None, at: float | None = None) -> None:
        self._transaction(
            "INSERT INTO events (run, seed, step, kind, detail, time) VALUES (?,?,?,?,?,?)",
            [(run_id, seed, step, kind, json.dumps(detail), time.time() if at is None else at)],
        )

    def add_artifact(self, run_id: str, kind: str, path: str, sha256: str) -> None:
        self._transaction("INSERT OR REPLACE INTO artifacts VALUES (?,?,?,?)", [(run_id, kind, path, sha256)])

    def replace_artifacts(self, run_id: str, kind: str, path: str, sha256: str) -> list[str]:
        """Record one artifact of a kind in place of the run's previous ones, in
        one transaction; returns the previous paths."""
        previous = [r[0] for r in self.conn.execute(
            "SELECT path FROM artifacts WHERE run = ? AND kind = ?", (run_id, kind))]
        self._statements([
            ("DELETE FROM artifacts WHERE run = ? AND kind = ?", [(run_id, kind)]),
            ("INSERT INTO artifacts VALUES (?,?,?,?)", [(run_id, kind, path, sha256)]),
        ])
        return previous

    # ------------------------------------------------------------ checkpoints

    def _checkpoint_dir(self, run_id: str) -> Path:
        return self.dir / "checkpoints" / run_id

    def save_checkpoint(self, run_id: str, step: int, data: bytes) -> None:
        """Made durable in an order a crash at any point cannot break:
        1. write `step-N.safetensors.tmp`, flush and fsync it;
        2. rename it to `step-N.safetensors` (atomic) and fsync the directory;
        3. record path and sha256, dropping the previous record, in one transaction;
        4. delete the previous file.
        A half-written file is never recorded, a renamed but unrecorded one is
        ignored (and removed) on reading, a recorded one changed on disk is refused."""
        directory = self._checkpoint_dir(run_id)
        directory.mkdir(parents=True, exist_ok=True)
        final = directory / f"step-{step:09d}.safetensors"
        temporary = final.with_name(final.name + ".tmp")
        with open(temporary, "wb") as f:
            half = len(data) // 2
            f.write(data[:half])
            faults.point("checkpoint-write")  # a crash here leaves a torn temporary file
            f.write(data[half:])
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, final)
        _fsync_dir(directory)
        faults.point("checkpoint-rename")  # renamed, not yet recorded: ignored on resume
        relative = final.relative_to(self.dir).as_posix()
        previous = self.replace_artifacts(run_id, CHECKPOINT, relative, hashlib.sha256(data).hexdigest())
        faults.point("checkpoint-record")  # recorded; the previous file is still on disk
        for path in previous:
            if path != relative:
                (self.dir / path).unlink(missing_ok=True)

    def checkpoint_data(self, run_id: str) -> tuple[bytes, str] | None:
        """Files in the run's checkpoint directory that the store does not record are removed."""
        records = [a for a in self.artifacts(run_id) if a["kind"] == CHECKPOINT]
        if not records:
            self._remove_unrecorded(run_id, keep=None)
            return None
        record = records[-1]
        path = self.dir / record["path"]
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise LearnscopeError(
                f"checkpoint {path} of run '{run_id}' cannot be read ({exc.strerror or exc}); nothing was changed"
            ) from None
        if hashlib.sha256(data).hexdigest() != record["sha256"]:
            raise LearnscopeError(
                f"checkpoint {path} of run '{run_id}' does not match its recorded sha256 (truncated or modified "
                f"after it was written); refusing to load it, nothing was changed"
            )
        self._remove_unrecorded(run_id, keep=path)
        return data, str(path)

    def _remove_unrecorded(self, run_id: str, keep: Path | None) -> None:
        directory = self._checkpoint_dir(run_id)
        if directory.is_dir():
            for path in directory.iterdir():
                if path != keep:
                    path.unlink(missing_ok=True)

    # ------------------------------------------------------------ reading

    def _record(self, row: tuple) -> RunRecord:
        r = list(row)
        r[5] = json.loads(r[5])
        r[6] = json.loads(r[6])
        record = RunRecord(*r)
        return as_seen(record, record.status != "running" or self._held_above(record))

    def _held_above(self, record: RunRecord) -> bool:
        """Whether a live process holds the run or a run above it (an arm's
        phenomenon, a trial's sweep)."""
        at: str | None = record.id
        while at is not None:
            if self._owned(at):
                return True
            row = self.conn.execute("SELECT parent FROM runs WHERE id = ?", (at,)).fetchone()
            at = row[0] if row else None
        return False

    def get_run(self, run_id: str) -> RunRecord:
        row = self.conn.execute(f"SELECT {RUN_COLUMNS} FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            ids = [r[0] for r in self.conn.execute("SELECT id FROM runs WHERE parent IS NULL ORDER BY created DESC")]
            recent = f"; recent runs: {', '.join(ids[:5])}" if ids else "; the store has no runs yet"
            raise NotFoundError(f"unknown run id '{run_id}' in {self.dir}{did_you_mean(run_id, ids)}{recent}")
        return self._record(row)

    def resolve_id(self, text: str) -> str:
        """The run a user means: its id; `latest`, the newest top-level run; or a
        prefix of exactly one id (of one top-level run, where it begins several
        ids of one run's arms or trials)."""
        if self.has_run(text):
            return text
        if text == "latest":
            newest = self.list_runs(1)
            if not newest:
                raise NotFoundError(f"'latest': the store at {self.dir} has no runs yet")
            return newest[0].id
        if text:
            begins = "substr(id, 1, ?) = ?"  # case-sensitive, unlike LIKE
            found = [r[0] for r in self.conn.execute(
                f"SELECT id FROM runs WHERE {begins} ORDER BY parent IS NOT NULL, created DESC", (len(text), text))]
            top = [r[0] for r in self.conn.execute(
                f"SELECT id FROM runs WHERE parent IS NULL AND {begins}", (len(text), text))]
            if len(found) == 1 or len(top) == 1:
                return top[0] if len(top) == 1 else found[0]
            if found:
                shown = ", ".join(found[:5]) + (", ..." if len(found) > 5 else "")
                raise LearnscopeError(f"'{text}' begins {len(found)} run ids ({shown}); give more of the id")
        self.get_run(text)  # the NotFoundError, with suggestions
        return text

    def children(self, run_id: str) -> list[RunRecord]:
        rows = self.conn.execute(f"SELECT {RUN_COLUMNS} FROM runs WHERE parent = ? ORDER BY created, id", (run_id,))
        return [self._record(r) for r in rows]

    def list_runs(self, limit: int | None = None) -> list[RunRecord]:
        sql = f"SELECT {RUN_COLUMNS} FROM runs WHERE parent IS NULL ORDER BY created DESC"
        rows = self.conn.execute(sql + (f" LIMIT {int(limit)}" if limit else ""))
        return [self._record(r) for r in rows]

    def metrics(self, run_ids: str | Sequence[str]) -> pd.DataFrame:
        ids = [run_ids] if isinstance(run_ids, str) else list(run_ids)
        return concat_metrics([metric_frame(run_id, self.conn.execute(
            "SELECT seed, step, name, value FROM metrics WHERE id >= ? AND id < ? ORDER BY id",
            self._row_range(run_id)).fetchall()) for run_id in ids])

    def events(self, run_id: str, kind: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT seed, step, kind, detail, time FROM events WHERE run = ?"
        args: list[Any] = [run_id]
        if kind:
            sql += " AND kind = ?"
            args.append(kind)
        rows = self.conn.execute(sql + " ORDER BY id", args)
        return [dict(seed=s, step=st, kind=k, detail=json.loads(d), time=t) for s, st, k, d, t in rows]

    def artifacts(self, run_id: str) -> list[dict[str, str]]:
        rows = self.conn.execute("SELECT kind, path, sha256 FROM artifacts WHERE run = ? ORDER BY path", (run_id,))
        return [dict(kind=k, path=p, sha256=h) for k, p, h in rows]
