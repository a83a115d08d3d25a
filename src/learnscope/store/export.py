"""Export metric rows of a run (and its arms) to CSV or Parquet."""

from __future__ import annotations

from pathlib import Path

from learnscope.errors import LearnscopeError
from learnscope.store.sqlite import Store

FORMATS = ("csv", "parquet")


def export_metrics(store: Store, run_id: str, fmt: str, out: str | Path) -> tuple[Path, int]:
    if fmt not in FORMATS:
        raise LearnscopeError(f"unknown export format '{fmt}'; valid: {', '.join(FORMATS)}")
    store.get_run(run_id)  # raises on an unknown id
    ids = [run_id] + [child.id for child in store.children(run_id)]
    frame = store.metrics(ids)
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "csv":
            frame.to_csv(out, index=False)
        else:
            frame.to_parquet(out, index=False)
    except OSError as exc:
        raise LearnscopeError(f"cannot write {out}: {exc.strerror or exc}") from None
    return out, len(frame)
