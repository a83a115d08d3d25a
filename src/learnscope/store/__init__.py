"""Where runs live: SQLite (WAL) by default, export to CSV/Parquet."""

from __future__ import annotations

from typing import Any

from learnscope.store.sqlite import RunRecord, Store, new_run_id, resolve_store_dir

__all__ = ["RunRecord", "Store", "export_metrics", "new_run_id", "resolve_store_dir"]


def __getattr__(name: str) -> Any:
    # the exports (and the trackers, pandas with them) load when first asked for, not with the store
    if name == "export_metrics":
        from learnscope.store.export import export_metrics

        return export_metrics
    raise AttributeError(f"module 'learnscope.store' has no attribute '{name}'")
