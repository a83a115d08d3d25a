"""A phenomenon: experiments (full and quick sizes, one per arm) plus a
signature, an executable check that the phenomenon happened, read from the
store so any past run can be re-checked."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import pandas as pd

from learnscope.spec import Experiment
from learnscope.store.sqlite import RunRecord


@dataclass
class ArmData:
    """The stored metrics of one arm, as per-seed arrays."""

    record: RunRecord
    frame: pd.DataFrame  # run_id, seed, step, name, value
    excluded: set[int] = field(default_factory=set)  # seeds that diverged: left out of every measure

    @property
    def seeds(self) -> list[int]:
        return [seed for seed in self.record.seeds if seed not in self.excluded]

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


def first_step(steps: np.ndarray, values: np.ndarray, threshold: float) -> np.ndarray:
    """Per seed, the first probed step at which values >= threshold (nan if never), [S]."""
    reached = values >= threshold
    index = reached.argmax(axis=1)
    return np.where(reached.any(axis=1), steps[index].astype(float), np.nan)


@dataclass
class Verdict:
    seeds: list[int]
    passed: list[bool]
    required_share: float
    measures: dict[str, list[float]] = field(default_factory=dict)  # per seed, shown in summaries
    failures: list[str] = field(default_factory=list)  # per seed: why it failed ("" if it passed)

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
        why = next((f"seed {s}: {f}" for s, f in zip(self.seeds, self.failures) if f), "no seed left to check")
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
        }

    @classmethod
    def from_dict(cls, data: dict) -> Verdict:
        return cls(data["seeds"], data["passed"], data["required_share"], data["measures"], data["failures"])


class Phenomenon:
    """Subclass, register with `@registry.phenomena.register(name)`, and give:
    `summary` (one line), `source` (the paper's title as in ../papers),
    `arms(quick)` and `check(arms)`. `headline` is the metric the progress
    bar shows; `required_share` the share of seeds the signature must hold in."""

    registry_name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    source: ClassVar[str] = ""
    headline: ClassVar[str] = "accuracy/test"
    required_share: ClassVar[float] = 1.0
    # {metric: label}: the arms side by side (mean [95% CI] of these final or
    # derived measures) in summaries and reports (Run.tables); none when empty
    comparison: ClassVar[dict[str, str]] = {}

    def arms(self, quick: bool) -> dict[str, Experiment]:
        raise NotImplementedError

    def check(self, arms: dict[str, ArmData]) -> Verdict:
        raise NotImplementedError

    def verdict(self, seeds: list[int], failures: list[str], measures: dict[str, list[float]]) -> Verdict:
        """The verdict from one failure reason per seed ('' where the signature holds)."""
        return Verdict(seeds=list(seeds), passed=[not why for why in failures], required_share=self.required_share,
                       measures=measures, failures=list(failures))

    def derived(self, arms: dict[str, ArmData]) -> dict[str, dict[str, np.ndarray]]:
        """Measures derived across arms, per arm and seed ({arm: {name: [S]}}),
        shown with the final metrics (mean, CI) in summaries and reports."""
        return {}

    def figures(self, arms: dict[str, ArmData]) -> list:
        """Figures beyond the curves over steps: [(caption, matplotlib Figure)]."""
        return []
