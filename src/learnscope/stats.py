"""Statistics across seeds: mean, standard deviation, 95% bootstrap CI.

The CI is scipy's bias-corrected and accelerated bootstrap of the mean with
a fixed resampling seed (the same numbers every time); when BCa is
undefined (e.g. every seed has the same value) the percentile interval is
used. One seed has no interval.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

RESAMPLES = 4000
CONFIDENCE = 0.95


@dataclass(frozen=True)
class SeedStats:
    n: int
    mean: float
    std: float
    ci_low: float
    ci_high: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def bootstrap_ci(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float]:
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    if len(x) < 2:
        return float("nan"), float("nan")
    if np.ptp(x) == 0:
        return float(x[0]), float(x[0])
    from scipy import stats as scipy_stats  # here, not at the top: scipy.stats costs seconds to import

    for method in ("BCa", "percentile"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = scipy_stats.bootstrap(
                (x,), np.mean, confidence_level=confidence, n_resamples=RESAMPLES, method=method,
                rng=np.random.default_rng(0),
            )
        low, high = res.confidence_interval
        if np.isfinite(low) and np.isfinite(high):
            return float(low), float(high)
    return float("nan"), float("nan")


def summarize(values: Sequence[float]) -> SeedStats:
    """Statistics of one metric across seeds; non-finite values (a diverged
    seed) are left out."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return SeedStats(0, float("nan"), float("nan"), float("nan"), float("nan"))
    low, high = bootstrap_ci(x)
    std = float(np.std(x, ddof=1)) if len(x) > 1 else float("nan")
    return SeedStats(len(x), float(np.mean(x)), std, low, high)
