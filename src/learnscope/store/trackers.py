"""Export a run to the trackers researchers already use: TensorBoard event
files and an MLflow tracking store, both written offline into a directory.

The layout is the one each tool's users compare seeds with: one series per
arm and seed. TensorBoard gets a run directory per seed (`seed-0`, ...; under
a directory per arm for a phenomenon, `grokking/seed-0`), the metric names as
scalar tags, and the resolved spec, flattened to dotted keys, as each run's
hparams. MLflow gets an experiment named after the run, a parent run holding
the run's spec as params, and one child run per arm and seed (tags `seed`
and `arm`, params the arm's spec) holding its metrics by step.

tensorboard and mlflow are optional extras (`learnscope[tensorboard]`,
`learnscope[mlflow]`), imported here only when an export asks for them.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd

from learnscope.errors import LearnscopeError
from learnscope.store.sqlite import RunRecord, Store

TRACKERS = ("tensorboard", "mlflow")
Scalar = str | int | float | bool
# MLflow's own limits on one log_batch call
MLFLOW_METRICS_PER_BATCH = 1000
MLFLOW_PARAMS_PER_BATCH = 100
# learnscope status -> MLflow run status (a run still running is left RUNNING)
MLFLOW_STATUS = {"finished": "FINISHED", "failed": "FAILED", "interrupted": "KILLED"}


def flatten_spec(spec: Mapping[str, Any], prefix: str = "") -> dict[str, Scalar]:
    """A spec as dotted keys with scalar values: nested mappings joined with
    dots (`recipe.lr`), lists of mappings by index (`probes.0.name`), lists of
    scalars as one JSON value (`model.hidden` = "[64, 64]"), None as "null"."""
    flat: dict[str, Scalar] = {}
    for key, value in spec.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten_spec(value, f"{name}."))
        elif isinstance(value, list | tuple) and any(isinstance(v, Mapping | list | tuple) for v in value):
            flat.update(flatten_spec({str(i): v for i, v in enumerate(value)}, f"{name}."))
        elif isinstance(value, str | bool | int | float):
            flat[name] = value
        else:  # None, an empty mapping, a list of scalars
            flat[name] = json.dumps(list(value) if isinstance(value, tuple) else value)
    return flat


@dataclass(frozen=True)
class Series:
    """One arm's one seed: what becomes a TensorBoard run or an MLflow child run."""

    arm: RunRecord
    seed: int
    rows: pd.DataFrame  # step, name, value of this arm and seed, in step order
    diverged_at: int | None

    @property
    def label(self) -> str:
        return f"{self.arm.arm}/seed-{self.seed}" if self.arm.arm else f"seed-{self.seed}"


def series_of(store: Store, record: RunRecord) -> Iterator[Series]:
    """The run's series, arm by arm (a phenomenon's children, else the run itself), seed by seed."""
    arms = store.children(record.id) if record.kind == "phenomenon" else [record]
    for arm in arms:
        frame = store.metrics(arm.id)
        diverged = store.diverged(arm.id)
        seeds = frame["seed"].to_numpy()
        for seed in dict.fromkeys([*arm.seeds, *map(int, np.unique(seeds))]):
            rows = frame[seeds == seed].sort_values("step", kind="stable")
            rows = rows[["step", "name", "value"]].reset_index(drop=True)
            yield Series(arm, seed, rows, diverged.get(seed))


def export_tracker(store: Store, run_id: str, fmt: str, out: str | Path) -> tuple[Path, int]:
    """Write run `run_id` as `fmt` (one of TRACKERS) into directory `out`;
    returns the directory and the number of metric values written."""
    record = store.get_run(run_id)  # raises on an unknown id
    out = Path(out)
    if fmt == "tensorboard":
        writer = _tensorboard_modules()
        _directory(out, fmt)
        if any(out.rglob("*tfevents*")):
            raise LearnscopeError(f"{out} already holds TensorBoard event files; choose an empty directory with -o")
        return out, _write_tensorboard(writer, store, record, out)
    if fmt == "mlflow":
        mlflow = _mlflow_modules()
        _directory(out, fmt)
        return out, _write_mlflow(mlflow, store, record, out)
    raise LearnscopeError(f"unknown tracker '{fmt}'; valid: {', '.join(TRACKERS)}")


def _directory(out: Path, fmt: str) -> None:
    """Make the output directory, or say in one line why it cannot be written."""
    if out.exists() and not out.is_dir():
        raise LearnscopeError(f"{out} is a file; the {fmt} export writes a directory: pass -o DIR")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".learnscope-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise LearnscopeError(f"cannot write {out}: {exc.strerror or exc}") from None


def _missing(extra: str, what: str, exc: ImportError) -> LearnscopeError:
    missing = (exc.name or "").split(".")[0] or exc
    return LearnscopeError(f"the {extra} export needs {what} ({missing} is not installed): "
                           f"pip install 'learnscope[{extra}]'")


# ------------------------------------------------------------------ TensorBoard


def _tensorboard_modules() -> SimpleNamespace:
    try:
        # summary_v2, not hparams.api: the api module imports tensorflow for its Keras callback
        from tensorboard.compat.proto import event_pb2, summary_pb2
        from tensorboard.plugins.hparams import summary_v2
        from tensorboard.summary.writer.event_file_writer import EventFileWriter
    except ImportError as exc:
        raise _missing("tensorboard", "tensorboard", exc) from None
    return SimpleNamespace(event=event_pb2, summary=summary_pb2, hparams=summary_v2, EventFileWriter=EventFileWriter)


def _write_tensorboard(tb: Any, store: Store, record: RunRecord, out: Path) -> int:
    """A run directory per series: its hparams (the arm's spec, its arm and seed)
    at step 0, then per step one event holding every metric as a scalar (float32,
    as TensorBoard keeps scalars); the experiment's hparams and metrics at the root.
    The store keeps no time per step: every event is stamped with the run's creation."""
    written = 0
    hparams: dict[str, list[Scalar]] = {}
    metric_names: dict[str, None] = {}
    wall = record.created
    for series in series_of(store, record):
        values = {**flatten_spec(series.arm.spec), **({"arm": series.arm.arm} if series.arm.arm else {}),
                  "seed": series.seed}
        for key, value in values.items():
            hparams.setdefault(key, []).append(value)
        writer = tb.EventFileWriter(str(out / series.label), max_queue_size=1024)
        try:
            writer.add_event(tb.event.Event(wall_time=wall, step=0, summary=tb.hparams.hparams_pb(
                values, trial_id=f"{record.id}/{series.label}", start_time_secs=series.arm.created)))
            rows = series.rows
            steps, names, scalars = rows["step"].to_numpy(), rows["name"].tolist(), rows["value"].to_numpy()
            metric_names.update(dict.fromkeys(names))
            starts = np.flatnonzero(np.r_[True, steps[1:] != steps[:-1]]) if len(steps) else np.array([], int)
            for begin, end in zip(starts, [*starts[1:], len(steps)]):
                summary = tb.summary.Summary(value=[tb.summary.Summary.Value(tag=names[i], simple_value=scalars[i])
                                                    for i in range(begin, end)])
                writer.add_event(tb.event.Event(wall_time=wall, step=int(steps[begin]), summary=summary))
            written += len(rows)
        finally:
            writer.close()
    config = tb.hparams.hparams_config_pb(
        [tb.hparams.HParam(key, _domain(tb.hparams, found)) for key, found in hparams.items()],
        [tb.hparams.Metric(name) for name in metric_names], time_created_secs=record.created)
    root = tb.EventFileWriter(str(out))
    try:
        root.add_event(tb.event.Event(wall_time=wall, summary=config))
    finally:
        root.close()
    return written


def _domain(hparams: Any, values: list[Scalar]) -> Any:
    """The values an hparam takes, as TensorBoard's filters show them: the
    strings or booleans seen, the range of numbers; none for a mix of kinds."""
    kinds = {type(v) for v in values}
    if kinds in ({str}, {bool}):
        return hparams.Discrete(sorted(set(values)))
    if kinds <= {int, float}:
        numbers = [float(v) for v in values]
        return hparams.RealInterval(min(numbers), max(numbers))
    return None


# ------------------------------------------------------------------ MLflow


def _mlflow_modules() -> SimpleNamespace:
    # An export must not reach the network: MLflow's usage telemetry would.
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    try:
        import alembic  # noqa: F401  (the sqlite store's schema migrations)
        import sqlalchemy  # noqa: F401
        from mlflow.entities import Metric, Param
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient
    except ImportError as exc:
        raise _missing("mlflow", "mlflow-skinny with sqlalchemy and alembic", exc) from None
    return SimpleNamespace(Client=MlflowClient, Metric=Metric, Param=Param, Error=MlflowException)


def mlflow_tracking_uri(out: str | Path) -> str:
    """The tracking URI of the MLflow store the export writes at `out`: a SQLite
    database, the backend current MLflow defaults to (its file store is in
    maintenance mode and refuses to open unless MLFLOW_ALLOW_FILE_STORE is set)."""
    return f"sqlite:///{(Path(out) / 'mlflow.db').resolve()}"


@contextmanager
def _quiet(*loggers: str) -> Iterator[None]:
    """MLflow and alembic log the creation of a new database at INFO, and MLflow's
    store uses SQLAlchemy features SQLAlchemy deprecates, which no user of the
    export can act on: keep the export's output one line."""
    previous = [(logging.getLogger(name), logging.getLogger(name).level) for name in loggers]
    for logger, _ in previous:
        logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            yield
    finally:
        for logger, level in previous:
            logger.setLevel(level)


def _write_mlflow(ml: Any, store: Store, record: RunRecord, out: Path) -> int:
    try:
        with _quiet("mlflow", "alembic"):
            return _write_mlflow_runs(ml, store, record, out)
    except ml.Error as exc:
        message = str(getattr(exc, "message", exc)).strip().splitlines()
        raise LearnscopeError(f"mlflow could not write {out}: {message[0] if message else exc}") from None


def _write_mlflow_runs(ml: Any, store: Store, record: RunRecord, out: Path) -> int:
    client = ml.Client(tracking_uri=mlflow_tracking_uri(out))
    if client.get_experiment_by_name(record.id) is not None:
        raise LearnscopeError(f"the MLflow store at {out} already holds an experiment named '{record.id}'; "
                              f"choose another -o directory")
    experiment = client.create_experiment(
        record.id, artifact_location=(out / "artifacts").resolve().as_uri(),
        tags={"learnscope.run_id": record.id, "learnscope.kind": record.kind, "learnscope.name": record.name})
    stamp = _ms(record.created)  # the store keeps no time per step
    tags = {"learnscope.run_id": record.id, "learnscope.kind": record.kind, "learnscope.name": record.name,
            "learnscope.status": record.status, "learnscope.version": record.version}
    if record.reason:
        tags["learnscope.reason"] = record.reason[:5000]
    parent = client.create_run(experiment, start_time=stamp, tags=tags, run_name=record.id).info.run_id
    _log_params(ml, client, parent, flatten_spec(record.spec))
    written = 0
    for series in series_of(store, record):
        arm = series.arm
        child_tags = {"mlflow.parentRunId": parent, "seed": str(series.seed), "learnscope.run_id": arm.id}
        if arm.arm:
            child_tags["arm"] = arm.arm
        if series.diverged_at is not None:
            child_tags["learnscope.diverged_at_step"] = str(series.diverged_at)
        child = client.create_run(experiment, start_time=_ms(arm.created), tags=child_tags,
                                  run_name=series.label).info.run_id
        _log_params(ml, client, child, flatten_spec(arm.spec))
        rows = series.rows
        metrics = [ml.Metric(name, float(value), stamp, int(step))
                   for step, name, value in zip(rows["step"].tolist(), rows["name"].tolist(), rows["value"].tolist())]
        for i in range(0, len(metrics), MLFLOW_METRICS_PER_BATCH):
            client.log_batch(child, metrics=metrics[i:i + MLFLOW_METRICS_PER_BATCH])
        written += len(metrics)
        _terminate(client, child, arm)
    _terminate(client, parent, record)
    return written


def _log_params(ml: Any, client: Any, run: str, flat: dict[str, Scalar]) -> None:
    params = [ml.Param(key, str(value)) for key, value in flat.items()]
    for i in range(0, len(params), MLFLOW_PARAMS_PER_BATCH):
        client.log_batch(run, params=params[i:i + MLFLOW_PARAMS_PER_BATCH])


def _terminate(client: Any, run: str, record: RunRecord) -> None:
    status = MLFLOW_STATUS.get(record.status)
    if status is not None:
        client.set_terminated(run, status, end_time=_ms(record.finished or record.created))


def _ms(seconds: float) -> int:
    return int(round(seconds * 1000))
