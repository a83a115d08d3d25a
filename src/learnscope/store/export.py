"""Export metric rows of a run (and its arms) to CSV or Parquet, or the run
to a tracker's directory (TensorBoard, MLflow: `learnscope.store.trackers`)."""

from __future__ import annotations

from pathlib import Path

from learnscope.errors import LearnscopeError
from learnscope.store.sqlite import Store
from learnscope.store.trackers import TRACKERS, export_tracker

FILES = ("csv", "parquet")
FORMATS = FILES + TRACKERS


def default_output(run_id: str, fmt: str) -> Path:
    """Where an export goes without -o: RUN.csv, RUN.parquet, or a directory RUN-tensorboard, RUN-mlflow."""
    return Path(f"{run_id}-{fmt}" if fmt in TRACKERS else f"{run_id}.{fmt}")


def export_metrics(store: Store, run_id: str, fmt: str, out: str | Path | None = None) -> tuple[Path, int]:
    """Write the run as `fmt` to `out` (default `default_output`); returns the
    path written and the number of metric rows in it."""
    if fmt not in FORMATS:
        raise LearnscopeError(f"unknown export format '{fmt}'; valid: {', '.join(FORMATS)}")
    out = Path(out) if out is not None else default_output(run_id, fmt)
    if fmt in TRACKERS:
        return export_tracker(store, run_id, fmt, out)
    store.get_run(run_id)  # raises on an unknown id
    ids = [run_id] + [child.id for child in store.children(run_id)]
    frame = store.metrics(ids)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "csv":
            frame.to_csv(out, index=False)
        else:
            frame.to_parquet(out, index=False)
    except OSError as exc:
        raise LearnscopeError(f"cannot write {out}: {exc.strerror or exc}") from None
    return out, len(frame)
