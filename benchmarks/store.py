"""4. Store: metric rows per second written through the Store, beside a raw
`executemany` of the same rows into a bare SQLite table (same file
settings, same one-transaction-per-probe-step batching), timed interleaved;
and the time to read one million rows back into pandas."""

from __future__ import annotations

import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from learnscope.store import Store

SEEDS = list(range(64))
METRICS = [f"metric_{i}" for i in range(10)]  # 640 rows per probe step: 10 metrics x 64 seeds
STEPS_PER_ROUND = 50
RUN = "grokking-20261123-181953-81e2.grokking"  # a run id as learnscope makes them: both sides write it


def _values(step: int) -> dict[str, list[float]]:
    return {name: [step * 1e-3 + i * 1e-6 + s for s in SEEDS] for i, name in enumerate(METRICS)}


def write_rates(rounds: int = 7) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "store")
        store.create_run(RUN, "bench", {}, SEEDS)
        raw = sqlite3.connect(Path(tmp) / "raw.db", isolation_level=None)
        raw.execute("PRAGMA journal_mode=WAL")
        raw.execute("PRAGMA synchronous=NORMAL")
        raw.execute("CREATE TABLE metrics (run TEXT, name TEXT, seed INTEGER, step INTEGER, value REAL)")
        store_times, raw_times = [], []
        step = 0
        for _ in range(rounds):
            batches = [(step + k, _values(step + k)) for k in range(STEPS_PER_ROUND)]
            step += STEPS_PER_ROUND
            start = time.perf_counter()
            for s, values in batches:
                store.write_metrics(RUN, s, SEEDS, values)
            store_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            for s, values in batches:
                rows = [(RUN, name, seed, s, float(v)) for name, vs in values.items() for seed, v in zip(SEEDS, vs)]
                raw.execute("BEGIN IMMEDIATE")
                raw.executemany("INSERT INTO metrics VALUES (?,?,?,?,?)", rows)
                raw.execute("COMMIT")
            raw_times.append(time.perf_counter() - start)
        rows = STEPS_PER_ROUND * len(SEEDS) * len(METRICS)
        store_rate = rows / statistics.median(store_times)
        raw_rate = rows / statistics.median(raw_times)
        store.close()
        raw.close()
    return {"store_rows_per_s": store_rate, "raw_rows_per_s": raw_rate, "ratio": store_rate / raw_rate}


def read_million(rows: int = 1_000_000) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(tmp)
        store.create_run("bench", "bench", {}, SEEDS)
        per_step = len(SEEDS) * len(METRICS)
        for step in range(-(-rows // per_step)):
            store.write_metrics("bench", step, SEEDS, _values(step))
        start = time.perf_counter()
        frame = store.metrics("bench")
        seconds = time.perf_counter() - start
        store.close()
    return {"rows": len(frame), "read_s": seconds}


def run(log=print) -> dict:
    writes = write_rates()
    log(f"  writes: store {writes['store_rows_per_s']:,.0f} rows/s, raw executemany "
        f"{writes['raw_rows_per_s']:,.0f} rows/s, ratio {writes['ratio']:.2f}")
    read = read_million()
    log(f"  read {read['rows']:,} rows into pandas: {read['read_s']:.2f} s")
    return {**writes, **read}
