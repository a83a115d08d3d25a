"""What a phenomenon's signature is written with, below the catalog and the
report: the stored metrics of an arm (ArmData), the claims a signature makes
(Signature, Threshold), their verdict (Verdict), and the figures a
phenomenon asks the report to draw, as data (Bands, Sweep, Tradeoff).

A signature is a list of claims. Each claim is a per-seed boolean array
with the statement it makes; a seed's signature holds when every claim
holds for it, and a seed that fails is reported with the reason of the
first claim it fails, in the order the claims were made.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

from learnscope.errors import LearnscopeError
from learnscope.spec import Experiment
from learnscope.store.sqlite import WATCH, RunRecord

if TYPE_CHECKING:  # pandas loads when metrics are first read into a frame, not with the store
    import pandas as pd


@dataclass
class ArmData:
    """The stored metrics of one arm, as per-seed arrays."""

    record: RunRecord
    frame: pd.DataFrame  # run_id, seed, step, name, value
    excluded: set[int] = field(default_factory=set)  # seeds that diverged: left out of every measure
    diverged: dict[int, int] = field(default_factory=dict)  # this arm's seeds that diverged -> at which step

    @property
    def seeds(self) -> list[int]:
        return [seed for seed in self.record.seeds if seed not in self.excluded]

    @property
    def has_experiment(self) -> bool:
        """Whether the stored spec is an Experiment (not for a run ls.watch recorded)."""
        return self.record.kind != WATCH

    @cached_property
    def experiment(self) -> Experiment:
        """The arm's stored spec, validated (so `--set` overrides are what is read)."""
        if not self.has_experiment:
            raise LearnscopeError(f"run '{self.record.id}' was recorded by ls.watch in its own training "
                                  "loop; its spec is no Experiment")
        return Experiment.model_validate(self.record.spec)

    def curve(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(steps [T], values [S, T]) of a metric, seeds in the run's order."""
        rows = self.frame[self.frame["name"] == name]
        if rows.empty:
            raise KeyError(f"metric '{name}' was not recorded in run {self.record.id}")
        table = rows.pivot_table(index="seed", columns="step", values="value", aggfunc="last", dropna=False)
        table = table.reindex(self.seeds)
        return table.columns.to_numpy(), table.to_numpy(dtype=float)

    def final(self, name: str) -> np.ndarray:
        """The last recorded value of a metric per seed, [S]."""
        return self.curve(name)[1][:, -1]

    def final_or_nan(self, name: str) -> np.ndarray:
        """`final`, NaN for a seed that diverged in this arm (its frozen parameters' value is no outcome):
        for a phenomenon that keeps diverged seeds (`Phenomenon.keeps_diverged`)."""
        values = self.final(name).copy()
        values[np.isin(self.seeds, list(self.diverged))] = np.nan
        return values


def arms_data(store: Any, arms: Sequence[RunRecord], keep_diverged: bool = False,
              frame: pd.DataFrame | None = None) -> dict[str, ArmData]:
    """Each arm's stored metrics (`frame`: theirs, already read) as ArmData, by arm
    name. A seed that diverged in any arm leaves every arm (signatures compare arms
    seed by seed) unless `keep_diverged`; each arm knows its own diverged seeds."""
    diverged = {arm.id: store.diverged(arm.id) for arm in arms}
    left_out = set() if keep_diverged else {seed for found in diverged.values() for seed in found}
    if frame is None:
        frame = store.metrics([arm.id for arm in arms])
    return {arm.arm or "": ArmData(arm, frame[frame["run_id"] == arm.id], left_out, diverged[arm.id])
            for arm in arms}


def first_step(steps: np.ndarray, values: np.ndarray, threshold: float, below: bool = False) -> np.ndarray:
    """Per seed, the first probed step at which values >= threshold (with
    `below`: <= threshold), nan if never, [S]. `threshold` may be per seed."""
    level = np.asarray(threshold, dtype=float)
    level = level[:, None] if level.ndim == 1 else level
    reached = values <= level if below else values >= level
    index = reached.argmax(axis=1)
    return np.where(reached.any(axis=1), steps[index].astype(float), np.nan)


# ---------------------------------------------------------------- thresholds and claims


Range = tuple[float, float]


class Threshold(float):
    """A threshold of a signature: a number that carries what it bounds and
    the range its measure took across seeds when it was set, at each size
    ("full", "quick"), so `learnscope list NAME` and the report can show why
    the line is where it is. Arithmetic treats it as the plain number."""

    name: str
    bounds: str
    measure: str | None
    measured: dict[str, Range]
    seeds_measured: dict[str, int]

    def __new__(cls, value: float, name: str, bounds: str, measure: str | None = None, *,
                full: Range | None = None, quick: Range | None = None,
                seeds: Mapping[str, int] | None = None) -> Threshold:
        self = super().__new__(cls, value)
        self.name = name
        self.bounds = bounds
        self.measure = measure
        self.measured = {size: (float(r[0]), float(r[1])) for size, r in (("full", full), ("quick", quick))
                         if r is not None}
        self.seeds_measured = dict(seeds or {})
        return self

    def __reduce__(self):  # pickles (and copies) as a plain number: the table above is data of the class
        return (float, (float(self),))

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "value": float(self), "bounds": self.bounds, "measure": self.measure,
                "measured": {k: list(v) for k, v in self.measured.items()}, "seeds": self.seeds_measured}

    def describe(self) -> str:
        ranges = "; ".join(f"{size} {_g(lo)} to {_g(hi)}" + (f" ({self.seeds_measured[size]} seeds)"
                                                           if size in self.seeds_measured else "")
                           for size, (lo, hi) in self.measured.items())
        return f"{self.name} = {float(self):g}: {self.bounds}" + (f" (measured {ranges})" if ranges else "")


def _g(value: float) -> str:
    return f"{value:.3g}"


@dataclass(frozen=True)
class Claim:
    """One statement of a signature and, per seed, whether it holds."""

    statement: str
    holds: tuple[bool, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"statement": self.statement, "holds": list(self.holds)}


class Signature:
    """The builder of a verdict: measures to record and claims to check,
    each per seed.

        sig = Signature(arm.seeds)
        t_fit = sig.measure("t_fit", first_step(steps, train, FIT))
        sig.claim("train accuracy reaches 0.99", ~np.isnan(t_fit), "train accuracy never reached 0.99")
        sig.claim("t_gen >= 3 t_fit", t_gen >= 3 * t_fit, "t_gen {0:.0f} < 3 x t_fit {1:.0f}", t_gen, t_fit)
        return sig.verdict()

    `why` is the reason a failing seed is given: a format string filled with
    that seed's entries of `values` (or a function of the seed's index).
    """

    def __init__(self, seeds: Sequence[int], required_share: float = 1.0):
        self.seeds = list(seeds)
        self.required_share = required_share
        self.measures: dict[str, list[float]] = {}
        self.claims: list[Claim] = []
        self._reasons: list[list[str]] = []

    def measure(self, name: str, values: Any) -> np.ndarray:
        """Record a per-seed measure (shown with the verdict); returns it as an array."""
        array = np.asarray(values, dtype=float).reshape(-1)
        if array.size != len(self.seeds):
            raise ValueError(f"measure '{name}' has {array.size} values for {len(self.seeds)} seeds")
        self.measures[name] = array.tolist()
        return array

    def claim(self, statement: str, holds: Any, why: Any = None, *values: Any) -> np.ndarray:
        """Claim `statement` of every seed; `holds` is its per-seed truth."""
        truth = np.broadcast_to(np.asarray(holds, dtype=bool), (len(self.seeds),))
        columns = [np.broadcast_to(np.asarray(v), (len(self.seeds),)) for v in values]
        reasons = []
        for s, ok in enumerate(truth):
            if ok:
                reasons.append("")
            elif why is None:
                reasons.append(f"not: {statement}")
            elif callable(why):
                reasons.append(str(why(s)))
            else:
                reasons.append(str(why).format(*(c[s] for c in columns)))
        self.claims.append(Claim(statement, tuple(bool(t) for t in truth)))
        self._reasons.append(reasons)
        return truth

    def fail_all(self, why: str) -> Verdict:
        """A verdict for arms the signature cannot read at all (every seed fails with `why`)."""
        self.claim("the arms can be read", np.zeros(len(self.seeds), dtype=bool), why)
        return self.verdict()

    def failures(self) -> list[str]:
        """Per seed, the reason of the first claim it fails ('' where all hold)."""
        return [next((r[s] for r in self._reasons if r[s]), "") for s in range(len(self.seeds))]

    def verdict(self) -> Verdict:
        failures = self.failures()
        return Verdict(seeds=self.seeds, passed=[not why for why in failures], required_share=self.required_share,
                       measures=self.measures, failures=failures, claims=[c.as_dict() for c in self.claims])


NO_SEEDS = "no seed left to check"


@dataclass
class Verdict:
    seeds: list[int]
    passed: list[bool]
    required_share: float
    measures: dict[str, list[float]] = field(default_factory=dict)  # per seed, shown in summaries
    failures: list[str] = field(default_factory=list)  # per seed: why it failed ("" if it passed)
    claims: list[dict] = field(default_factory=list)  # what was checked: {statement, holds per seed}
    no_seeds: str = NO_SEEDS  # why, when no seed could be checked

    @property
    def needed(self) -> int:
        return math.ceil(self.required_share * len(self.seeds) - 1e-9)

    @property
    def ok(self) -> bool:
        return bool(self.seeds) and sum(self.passed) >= self.needed

    def line(self, name: str) -> str:
        k, n = sum(self.passed), len(self.seeds)
        if self.ok:
            return f"verified {name}: PASS ({k}/{n} seeds)"
        why = next((f"seed {s}: {f}" for s, f in zip(self.seeds, self.failures) if f), self.no_seeds)
        return f"verified {name}: FAIL ({k}/{n} seeds hold, {self.needed} needed; {why})"

    def as_dict(self) -> dict:
        return {
            "ok": self.ok,
            "seeds": self.seeds,
            "passed": self.passed,
            "required_share": self.required_share,
            "needed": self.needed,
            "measures": self.measures,
            "failures": self.failures,
            "claims": self.claims,
            "no_seeds": self.no_seeds,
        }

    @classmethod
    def from_dict(cls, data: dict) -> Verdict:
        return cls(data["seeds"], data["passed"], data["required_share"], data["measures"], data["failures"],
                   data.get("claims", []),  # verdicts stored before claims were recorded have none
                   data.get("no_seeds", NO_SEEDS))


# ---------------------------------------------------------------- figures, as data for the report


@dataclass
class Bands:
    """Lines over x, each the mean across seeds with a band from the lowest
    to the highest seed: `lines` holds (label, x [T], values [S, T])."""

    caption: str
    title: str
    xlabel: str
    ylabel: str
    lines: list[tuple[str, np.ndarray, np.ndarray]]
    ylim: tuple[float, float] | None = None


@dataclass
class Sweep:
    """Final values across a sweep of arms (forget-set sizes, sequential
    requests): per panel (a measure), per line (a method), per tick the
    values across seeds (None leaves the tick out for that line)."""

    caption: str
    title: str
    xlabel: str
    ticks: list[str]
    panels: dict[str, dict[str, list[np.ndarray | None]]]


@dataclass
class Tradeoff:
    """One measure (x) against another (y) along training: per line the
    curves of both ([S, T] each); reference points as per-seed finals."""

    caption: str
    title: str
    x: str
    y: str
    lines: dict[str, tuple[np.ndarray, np.ndarray]]
    references: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
