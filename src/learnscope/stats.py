"""Statistics across seeds: mean, standard deviation, 95% CI of the mean.

The CI is the Student t-interval, mean ± t(0.975; n − 1) · sd / √n
(`mean_ci`), at every seed count; one seed has no interval, and values
without spread give the point interval. It is the one interval of the
package: summaries (`learnscope show`, the report, `Run.summary`), the
paired differences of `compare` (`paired_difference`) and the sweeps.

Why not the bootstrap, which this module used before: at the seed counts
people run, a bootstrap interval treats the spread of a handful of values as
known and undercovers. Drawing N(0, 1) values (2000 draws per seed count,
tests/test_store_stats.py holds the t-interval to it), the 95% BCa
interval (scipy, 4000 resamples) covered the mean in 50.5% of draws at 2
seeds ([min, max]), 71.5% at 3, 79.3% at 4, 87.8% at 8, 90.9% at 16 and
93.0% at 32; the t-interval (4000 draws) in 94.4-95.5% at every n from 2
to 64, as it must: for normal values it is exact. Nor a switch to BCa
above some n: BCa still undercovers at 32 seeds. On skewed values (exponential, log-normal) the t-interval
undercovers too (82-94% at 2-64 seeds), but less than BCa does below 16
seeds. A studentized bootstrap collapses to a point at 2 seeds (a resample
of two values has no spread or is the pair itself) and covered 82-85% at 3
(400 draws). The t-interval is also deterministic: no resampling seed
moves its endpoints.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

CONFIDENCE = 0.95
CI_METHOD = "student-t"  # the name `show --json` reports
CI_DESCRIPTION = "Student t-interval of the mean over n seeds, mean ± t(0.975; n−1) · sd / √n"


def mean_ci(values: Sequence[float] | np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """(mean, low, high): the mean across seeds and its Student t-interval,
    non-finite values (a diverged seed) left out. Fewer than 2 values: the
    mean (NaN for none) and a NaN interval; no spread: the point interval."""
    x = np.asarray(values, dtype=float).ravel()
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return math.nan, math.nan, math.nan
    if np.ptp(x) == 0:  # exact, where the mean of equal floats may round off the value
        value = float(x[0])
        return (value, math.nan, math.nan) if len(x) < 2 else (value, value, value)
    mean = float(np.mean(x))
    if len(x) < 2:
        return mean, math.nan, math.nan
    # scipy.special, not scipy.stats: the same quantile (stats.t.ppf calls stdtrit) without seconds of import
    from scipy.special import stdtrit

    half = float(stdtrit(len(x) - 1, 0.5 + confidence / 2)) * float(np.std(x, ddof=1)) / math.sqrt(len(x))
    return mean, mean - half, mean + half


@dataclass(frozen=True)
class SeedStats:
    n: int
    mean: float
    std: float
    ci_low: float
    ci_high: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def summarize(values: Sequence[float]) -> SeedStats:
    """Statistics of one metric across seeds; non-finite values (a diverged
    seed) are left out."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return SeedStats(0, float("nan"), float("nan"), float("nan"), float("nan"))
    mean, low, high = mean_ci(x)
    # no spread is exactly 0, where np.std of equal floats may leave a residue (1.5e-17 for six 0.1s)
    std = float("nan") if len(x) < 2 else 0.0 if np.ptp(x) == 0 else float(np.std(x, ddof=1))
    return SeedStats(len(x), mean, std, low, high)


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

    The interval is `mean_ci` of the differences, the t-interval (the same
    as scipy.stats.ttest_rel's), and the p-value that test's, two-sided;
    see the module's docstring for why not a bootstrap. It is wide at small
    n (t_1 = 12.7 at two seeds), which is the honest width.

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
        p_value = float(scipy_stats.ttest_rel(y, x).pvalue)
    _, low, high = mean_ci(d, confidence)
    return PairedStats(n, mean_a, mean_b, mean_d, low, high, p_value)


def fmt(value: float | None) -> str:
    """A number as summaries, tables and reports print it ("–" for none or non-finite)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    magnitude = abs(value)
    if magnitude != 0 and (magnitude >= 1e4 or magnitude < 1e-3):
        return f"{value:.3e}"
    return f"{value:.4g}"
