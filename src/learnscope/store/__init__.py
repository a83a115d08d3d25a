"""Where runs live: SQLite (WAL) by default, export to CSV/Parquet."""

from learnscope.store.export import export_metrics
from learnscope.store.sqlite import RunRecord, Store, new_run_id, resolve_store_dir

__all__ = ["RunRecord", "Store", "export_metrics", "new_run_id", "resolve_store_dir"]
