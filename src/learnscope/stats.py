"""Statistics across seeds: mean, standard deviation, 95% bootstrap CI.

The CI is scipy's bias-corrected and accelerated bootstrap of the mean with
a fixed resampling seed (the same numbers every time); when BCa is
undefined (e.g. every seed has the same value) the percentile interval is
used. One seed has no interval.

Two runs are compared seed by seed (`paired_difference`): the mean of the
per-seed differences with a t-interval and a paired t-test, see there.
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


@dataclass(frozen=True)
class PairedStats:
    """B − A over seeds paired by seed: `n` pairs, the means of each side and
    of the differences, the 95% CI of the mean difference, the two-sided
    p-value of the paired t-test, and a note when the test is degenerate."""

    n: int
    mean_a: float
    mean_b: float
    mean_difference: float
    ci_low: float
    ci_high: float
    p_value: float
    note: str | None = None

    def as_dict(self) -> dict[str, float | int | str | None]:
        return asdict(self)


def paired_difference(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray,
                      confidence: float = CONFIDENCE) -> PairedStats:
    """B − A for values paired by position (a seed's value in run A and in
    run B); a pair with a non-finite value on either side is left out.

    The interval is the t-interval of the mean of the differences
    (scipy.stats.ttest_rel's, mean ± t_{n−1} · sd/√n) and the p-value that
    test's, two-sided. Not the bootstrap of `bootstrap_ci`: at the seed counts
    people run (2–16) a bootstrap interval ignores that the spread itself is
    estimated from a handful of values, and it undercovers. Drawing normal
    differences with mean 0 (400 draws per size), the 95% BCa bootstrap
    interval covered the true mean in 52% of draws at n = 2, 70% at 3, 80%
    at 4, 87% at 8 and 89% at 16; the t-interval in 94–96% at every n. For
    normal differences the t-interval is exact; it is wide at small n
    (t_1 = 12.7 at two seeds), which is the honest width.

    Degenerate cases, defined rather than left to 0/0:
    - fewer than 2 pairs: no interval and no test (NaN), with a note; with
      one pair the mean difference is still that pair's;
    - every pair differs by the same amount d (no spread; e.g. identical
      values): the interval is the point [d, d] and p is the limit of the
      t-test as the spread goes to 0: 1 when d = 0 (nothing differs), 0
      otherwise (every seed moved by exactly d), with a note.
    """
    x = np.asarray(a, dtype=float)
    y = np.asarray(b, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"paired values need two sequences of one length, got shapes {x.shape} and {y.shape}")
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    n = len(x)
    nan = float("nan")
    if n == 0:
        return PairedStats(0, nan, nan, nan, nan, nan, nan, "no paired seed")
    d = y - x
    mean_a, mean_b, mean_d = float(np.mean(x)), float(np.mean(y)), float(np.mean(d))
    if n < 2:
        return PairedStats(n, mean_a, mean_b, mean_d, nan, nan, nan, "one paired seed: no interval or test")
    if np.ptp(d) == 0:
        step = float(d[0])
        return PairedStats(n, mean_a, mean_b, step, step, step, 1.0 if step == 0 else 0.0,
                           "no spread: every seed differs by the same amount; the CI is that point, p the t-test's limit")
    from scipy import stats as scipy_stats  # here, not at the top: scipy.stats costs seconds to import

    with warnings.catch_warnings():
        # a spread tiny next to the mean ("catastrophic cancellation"): the result is still right (p ≈ 0)
        warnings.simplefilter("ignore", RuntimeWarning)
        test = scipy_stats.ttest_rel(y, x)
        low, high = test.confidence_interval(confidence)
    return PairedStats(n, mean_a, mean_b, mean_d, float(low), float(high), float(test.pvalue))
