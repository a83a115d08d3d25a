"""Timing helpers. These machines are shared and noisy, so alternatives that
are compared with each other are timed interleaved, round after round, and
each reports the median over rounds after a warm-up."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def median_time(work: Callable[[], object], repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time of `work()` in seconds."""
    return interleaved({"work": work}, repeats=repeats, warmup=warmup)["work"]


def interleaved(works: dict[str, Callable[[], object]], repeats: int = 5, warmup: int = 1,
                target_seconds: float = 0.0) -> dict[str, float]:
    """Median seconds per call of each work, timed round-robin. With
    `target_seconds`, each timing repeats the call enough times to last about
    that long (per-call times are then the chunk's mean)."""
    calls = {}
    for name, work in works.items():
        for _ in range(warmup):
            work()
        start = time.perf_counter()
        work()
        once = time.perf_counter() - start
        calls[name] = max(1, int(target_seconds / max(once, 1e-7))) if target_seconds else 1
    samples: dict[str, list[float]] = {name: [] for name in works}
    for _ in range(repeats):
        for name, work in works.items():
            k = calls[name]
            start = time.perf_counter()
            for _ in range(k):
                work()
            samples[name].append((time.perf_counter() - start) / k)
    return {name: statistics.median(values) for name, values in samples.items()}
