"""Two runs compared seed by seed: the difference B − A of every final
metric they share, with its 95% CI and a paired test, and what differs
between their specs.

Pairing. A final value is the last recorded value of a metric for one seed
(`Run.final`, with its derived measures). Two runs that each hold one arm
(an experiment, a watched loop, or one arm of a phenomenon, `RUN.ARM`) are
paired as they are; two phenomenon runs arm by arm, an arm with the arm of
the same name. Within a pair of arms, seed s of A is paired with seed s of
B; only seeds recorded in both runs and diverged in neither (a seed that
diverged in any arm of a run is left out of that run, as in its summary)
are paired, and a pair with a non-finite value is left out of that metric.
The statistics are `stats.paired_difference`'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from learnscope.errors import LearnscopeError, one_of
from learnscope.runs import Run
from learnscope.stats import PairedStats, paired_difference


@dataclass(frozen=True)
class MetricDifference:
    """One metric of one pair of arms: B − A over the paired seeds."""

    arm: str  # the arms' common name when phenomena are paired by arm, else ""
    metric: str
    seeds: tuple[int, ...]  # the paired seeds with finite values on both sides
    stats: PairedStats

    @property
    def key(self) -> str:
        """`metric`, or `ARM:metric` for an arm of a phenomenon."""
        return metric_key(self.arm, self.metric)

    def as_dict(self) -> dict[str, Any]:
        return {"arm": self.arm, "metric": self.metric, **self.stats.as_dict(), "seeds": list(self.seeds)}


@dataclass(frozen=True)
class SpecDiff:
    """Dotted keys of two stored specs: those with different values (A's, B's)
    and those only one of them has. Lists are compared whole."""

    changed: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    only_a: dict[str, Any] = field(default_factory=dict)
    only_b: dict[str, Any] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.changed or self.only_a or self.only_b)

    def as_dict(self) -> dict[str, Any]:
        return {"changed": {k: list(v) for k, v in self.changed.items()}, "only_a": self.only_a,
                "only_b": self.only_b}


@dataclass(frozen=True)
class Comparison:
    a: str
    b: str
    arms: list[tuple[str, str]]  # the paired arms: (A's arm, B's arm); "" for a run without arms
    seeds: list[int]  # seeds recorded in both runs and diverged in neither
    left_out: dict[int, str]  # a seed of either run that is not paired -> why
    differences: list[MetricDifference]  # one per arm pair and metric recorded in both, in that order
    only_a: list[str]  # metric keys recorded in A alone
    only_b: list[str]
    spec_diff: SpecDiff

    def by_key(self) -> dict[str, MetricDifference]:
        return {d.key: d for d in self.differences}


def metric_key(arm: str, metric: str) -> str:
    return f"{arm}:{metric}" if arm else metric


def flatten(spec: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"recipe": {"lr": 0.1}} -> {"recipe.lr": 0.1}; an empty mapping is a value of its own."""
    flat: dict[str, Any] = {}
    for key, value in spec.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def spec_diff(a: dict[str, Any], b: dict[str, Any]) -> SpecDiff:
    flat_a, flat_b = flatten(a), flatten(b)

    def same(x: Any, y: Any) -> bool:  # 20 and 20.0 are one value (a spec validates them alike); True and 1 are not
        return bool(x == y) and isinstance(x, bool) == isinstance(y, bool)

    return SpecDiff(
        changed={k: (flat_a[k], flat_b[k]) for k in sorted(flat_a.keys() & flat_b.keys())
                 if not same(flat_a[k], flat_b[k])},
        only_a={k: flat_a[k] for k in sorted(flat_a.keys() - flat_b.keys())},
        only_b={k: flat_b[k] for k in sorted(flat_b.keys() - flat_a.keys())},
    )


def _arm_pairs(run_a: Run, run_b: Run) -> list[tuple[str, str]]:
    names_a = [arm.arm or "" for arm in run_a.arms]
    names_b = [arm.arm or "" for arm in run_b.arms]
    phenomena = run_a.record.kind == "phenomenon", run_b.record.kind == "phenomenon"
    if all(phenomena):
        pairs = [(arm, arm) for arm in names_a if arm in names_b]
        if not pairs:
            raise LearnscopeError(f"runs '{run_a.id}' and '{run_b.id}' have no arm of the same name "
                                  f"(arms: {', '.join(names_a) or 'none'} and {', '.join(names_b) or 'none'})")
        return pairs
    if any(phenomena):
        run, names = (run_a, names_a) if phenomena[0] else (run_b, names_b)
        shown = ", ".join(f"{run.id}.{arm}" for arm in names)
        raise LearnscopeError(f"run '{run.id}' is a phenomenon and the other run is not: its arms pair only with "
                              f"another phenomenon's; compare one of its arms instead: {shown}")
    return [(names_a[0], names_b[0])]


def _usable_seeds(run: Run) -> set[int]:
    return set(run.record.seeds) - {seed for seeds in run.diverged.values() for seed in seeds}


def _left_out(run_a: Run, run_b: Run) -> dict[int, str]:
    why: dict[int, str] = {}
    for side, run, other in (("A", run_a, run_b), ("B", run_b, run_a)):
        diverged = {seed for seeds in run.diverged.values() for seed in seeds}
        for seed in run.record.seeds:
            if seed in diverged:
                why.setdefault(seed, f"diverged in {side}")
            elif seed not in other.record.seeds:
                why.setdefault(seed, f"only in {side}")
    return dict(sorted(why.items()))


def _values(final: pd.DataFrame, arm: str, seeds: list[int]) -> dict[str, dict[int, float]]:
    """metric -> seed -> final value, for one arm and the paired seeds."""
    rows = final[(final["arm"] == arm) & final["seed"].isin(seeds)]
    found: dict[str, dict[int, float]] = {}
    for name, seed, value in zip(rows["name"], rows["seed"], rows["value"]):
        found.setdefault(str(name), {})[int(seed)] = float(value)
    return found


def compare_runs(run_a: Run, run_b: Run, metrics: Sequence[str] = ()) -> Comparison:
    """B − A for every final metric recorded in both runs (or the `metrics`
    named: a metric name, in every paired arm, or `ARM:metric`), paired by
    arm and seed as the module says, and the diff of their stored specs.
    Refuses (LearnscopeError) runs whose arms do not pair, runs without a
    seed in common, a named metric not recorded in both, and runs with no
    metric in common."""
    pairs = _arm_pairs(run_a, run_b)
    seeds = sorted(_usable_seeds(run_a) & _usable_seeds(run_b))
    left_out = _left_out(run_a, run_b)
    if not seeds:
        why = "; ".join(f"seed {seed} {reason}" for seed, reason in left_out.items())
        raise LearnscopeError(f"runs '{run_a.id}' and '{run_b.id}' have no seed in common that diverged in neither "
                              f"(A seeds {run_a.record.seeds}, B seeds {run_b.record.seeds}"
                              + (f"; {why}" if why else "") + ")")
    final_a, final_b = run_a.final(), run_b.final()
    label_arms = run_a.record.kind == "phenomenon"
    found: list[tuple[str, str, dict[int, float], dict[int, float]]] = []
    only_a: list[str] = []
    only_b: list[str] = []
    for arm_a, arm_b in pairs:
        label = arm_a if label_arms else ""
        values_a, values_b = _values(final_a, arm_a, seeds), _values(final_b, arm_b, seeds)
        only_a += [metric_key(label, name) for name in sorted(values_a.keys() - values_b.keys())]
        only_b += [metric_key(label, name) for name in sorted(values_b.keys() - values_a.keys())]
        found += [(label, name, values_a[name], values_b[name]) for name in sorted(values_a.keys() & values_b.keys())]
    if not found:
        raise LearnscopeError(f"runs '{run_a.id}' and '{run_b.id}' have no final metric in common "
                              f"(A: {', '.join(only_a) or 'none'}; B: {', '.join(only_b) or 'none'})")
    if metrics:
        names = {name for _, name, _, _ in found}
        keys = {metric_key(label, name) for label, name, _, _ in found if label}
        for wanted in metrics:
            if wanted not in names and wanted not in keys:
                raise LearnscopeError(f"metric '{wanted}' is not recorded in both runs; {one_of(wanted, names | keys)}")
        found = [entry for entry in found if entry[1] in metrics or metric_key(entry[0], entry[1]) in metrics]
    differences = []
    for label, name, by_seed_a, by_seed_b in found:
        common = [seed for seed in seeds if seed in by_seed_a and seed in by_seed_b]
        a = np.array([by_seed_a[seed] for seed in common], dtype=float)
        b = np.array([by_seed_b[seed] for seed in common], dtype=float)
        finite = np.isfinite(a) & np.isfinite(b)
        paired = tuple(seed for seed, ok in zip(common, finite) if ok)
        differences.append(MetricDifference(label, name, paired, paired_difference(a, b)))
    return Comparison(run_a.id, run_b.id, pairs, seeds, left_out, differences, only_a, only_b,
                      spec_diff(run_a.record.spec, run_b.record.spec))


def compare_with(baseline: Run, others: Sequence[Run], metrics: Sequence[str] = ()) -> list[Comparison]:
    """`compare_runs(baseline, other)` for each of `others` (e.g. a sweep's
    trials against its best one), in their order; the baseline itself is skipped."""
    return [compare_runs(baseline, other, metrics) for other in others if other.id != baseline.id]
