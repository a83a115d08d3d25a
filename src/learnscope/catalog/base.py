"""A phenomenon: its arms (typed: a name, an Experiment, the arm it starts
from) at full and quick sizes, the parameters that move together, and a
signature, a list of per-seed claims read from the store, so any past run
can be re-checked. Thresholds are data (results.Threshold) with the ranges
measured across seeds when they were set."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from learnscope.errors import LearnscopeError
from learnscope.results import ArmData, Bands, Signature, Sweep, Threshold, Tradeoff, Verdict
from learnscope.spec import Experiment

Figure = Bands | Sweep | Tradeoff


@dataclass(frozen=True)
class Arm:
    """One arm of a phenomenon: an ordinary run of `experiment`, named
    `name`, that starts from the last checkpoint of the arm `starts_from`
    (an earlier arm of the same run) when that is given."""

    name: str
    experiment: Experiment
    starts_from: str | None = None

    def __post_init__(self) -> None:
        if not self.name or any(c in self.name for c in ":= \n"):  # `--set ARM:key=value` must parse
            raise LearnscopeError(f"arm name '{self.name}' must be non-empty, without ':', '=' or spaces")
        if (self.experiment.init_from or "").startswith("@"):
            raise LearnscopeError(f"arm '{self.name}': name the arm it starts from with starts_from, not init_from")

    def derive(self, name: str, updates: Mapping[str, Any] | None = None, starts_from: str | None = None) -> Arm:
        """Another arm: this experiment with `updates` ({dotted key: value}) applied and validated."""
        return Arm(name, self.experiment.derive(updates or {}), starts_from)

    def stored_spec(self) -> dict:
        """The spec the store keeps: the experiment, starting from `@ARM`."""
        spec = self.experiment.to_dict()
        if self.starts_from is not None:
            spec["init_from"] = f"@{self.starts_from}"
        return spec

    def stored_experiment(self) -> Experiment:
        """The experiment as the arm runs it: starting from `@ARM` when it starts from one."""
        return Experiment.model_validate(self.stored_spec())

    @classmethod
    def from_stored(cls, name: str, spec: Mapping) -> Arm:
        spec = dict(spec)
        source = spec.get("init_from")
        if source is not None and str(source).startswith("@"):
            del spec["init_from"]
            return cls(name, Experiment.model_validate(spec), str(source)[1:])
        return cls(name, Experiment.model_validate(spec))


class Phenomenon:
    """Subclass, register with `@registry.phenomena.register(name)`, and give:
    `summary` (one line), `source` (the paper's title as in ../papers),
    `arms(quick)` (a list of Arm) and `check(arms)` (a Signature's verdict).
    `headline` is the metric the progress bar shows; `required_share` the
    share of seeds the signature must hold in; `thresholds` the Thresholds
    its claims use; `moves_together` groups of dotted keys that a global
    `--set` must not change alone; `fixed` keys the arms themselves depend on."""

    registry_name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    source: ClassVar[str] = ""
    headline: ClassVar[str] = "accuracy/test"
    required_share: ClassVar[float] = 1.0
    thresholds: ClassVar[tuple[Threshold, ...]] = ()
    moves_together: ClassVar[tuple[tuple[str, ...], ...]] = ()
    # dotted keys the arms' structure fixes (a count of chained arms, ...): never set globally
    fixed: ClassVar[tuple[str, ...]] = ()
    # {metric: label}: the arms side by side (mean [95% CI] of these final or
    # derived measures) in summaries and reports (Run.tables); none when empty
    comparison: ClassVar[dict[str, str]] = {}
    # a seed that diverges in one arm leaves every arm, unless divergence is an outcome the signature
    # reads (ArmData.diverged; e.g. a learning-rate sweep, where a diverged run costs its initial loss)
    keeps_diverged: ClassVar[bool] = False

    def arms(self, quick: bool) -> list[Arm]:
        raise NotImplementedError

    def check(self, arms: dict[str, ArmData]) -> Verdict:
        raise NotImplementedError

    def signature(self, seeds: Sequence[int]) -> Signature:
        """The builder of this phenomenon's verdict for these seeds."""
        return Signature(seeds, self.required_share)

    def derived(self, arms: dict[str, ArmData]) -> dict[str, dict[str, np.ndarray]]:
        """Measures derived across arms, per arm and seed ({arm: {name: [S]}}),
        shown with the final metrics (mean, CI) in summaries and reports."""
        return {}

    def figures(self, arms: dict[str, ArmData]) -> list[Figure]:
        """Figures beyond the curves over steps, as data the report draws."""
        return []


def arm_table(arms: Sequence[Arm], phenomenon: str = "") -> dict[str, Arm]:
    """Arms by name, checked: names unique, every `starts_from` and every run
    an arm reads by "@ARM" (a teacher) an earlier arm."""
    table: dict[str, Arm] = {}
    for arm in arms:
        if arm.name in table:
            raise LearnscopeError(f"{phenomenon}: two arms are named '{arm.name}'")
        if arm.starts_from is not None and arm.starts_from not in table:
            raise LearnscopeError(f"{phenomenon}: arm '{arm.name}' starts from '@{arm.starts_from}', "
                                  f"which is not an arm before it")
        for reference in arm.experiment.runs_read():
            if reference.source.startswith("@") and reference.source[1:] not in table:
                raise LearnscopeError(f"{phenomenon}: arm '{arm.name}' reads '{reference.source}' at "
                                      f"{reference.path}, which is not an arm before it")
        table[arm.name] = arm
    return table
