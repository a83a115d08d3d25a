"""Sweeps: one experiment or phenomenon over a grid of values, each point a
trial, every trial with the same seeds.

A sweep is a run of kind "sweep" in the store. Its spec holds the target, the
grid's axes and values, quick, seeds, the `--set` overrides, the backend and
its trials (run id, swept values; an experiment trial's full spec). Each trial
is an ordinary run (an experiment, or a phenomenon with its arms and verdict)
whose parent is the sweep, with id `SWEEP.tN` (arms `SWEEP.tN.ARM`) and an
event "sweep-trial" holding its swept values. Every trial's spec is validated
before anything is recorded. The driver here owns the store; a `Backend`
(learnscope.sweep.backends) decides where trials run.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from learnscope import registry
from learnscope.compare import Comparison, compare_with
from learnscope.errors import LearnscopeError, RunInterrupted, one_of
from learnscope.progress import TrainingProgress
from learnscope.provenance import ENVIRONMENT_EVENT, environment
from learnscope.runner import ALL_DIVERGED, DEVICE_EVENT, Device, recorded_device
from learnscope.runs import Run
from learnscope.spec import load_spec_file
from learnscope.stats import mean_ci
from learnscope.store.base import Op, RunRecord, RunStore, run_id_for
from learnscope.store.sqlite import Store
from learnscope.sweep.backends import Backend, TrialHost, get_backend
from learnscope.sweep.grid import Axis, Trial, experiment_trials, parse_grid, phenomenon_trials
from learnscope.sweep.trial import TRIAL_EVENT, TrialResult, TrialWork, run_trial, trial_work
from learnscope.train.devices import resolve_device

__all__ = ["TRIAL_EVENT", "Backend", "SensitivityRow", "Sweep", "TrialResult", "lr_sensitivity", "resume_sweep",
           "run_sweep"]


def _reporter(progress: TrainingProgress | bool) -> TrainingProgress:
    return progress if isinstance(progress, TrainingProgress) else TrainingProgress(enabled=bool(progress))


def plan_trials(target: str, grid: Sequence[str], sweep_id: str, seeds: int | None = None, quick: bool = False,
                overrides: Sequence[str] = (), device: torch.device | None = None) -> tuple[dict[str, Any], list[Trial]]:
    """(the sweep's stored spec, its trials), every trial validated, and refused if it
    cannot fit in `device`'s memory (None: not checked here); nothing recorded."""
    axes = parse_grid(grid)
    if target in registry.phenomena:
        kind, name = "phenomenon", target
        trials = phenomenon_trials(sweep_id, target, quick, axes, overrides, seeds, device)
    else:
        if quick:
            raise LearnscopeError("--quick applies to phenomena; for a spec file set its size with --set")
        base = load_spec_file(target)
        kind, name = "experiment", Path(target).stem
        trials = experiment_trials(sweep_id, base, axes, overrides, seeds, device)
    spec = {"target": target, "kind": kind, "name": name, "quick": quick, "seeds": seeds,
            "overrides": list(overrides), "axes": [axis.as_dict() for axis in axes],
            "trials": [{**t.as_dict(), **({"spec": t.spec} if kind == "experiment" else {})} for t in trials]}
    return spec, trials


def stored_trials(record: RunRecord) -> list[Trial]:
    """A stored sweep's trials (a phenomenon trial's spec is rebuilt by its run)."""
    return [Trial(t["index"], t["run_id"], t["values"], t["overrides"], record.seeds, t.get("spec", {}))
            for t in record.spec["trials"]]


def run_sweep(target: str, grid: Sequence[str], seeds: int | None = None, quick: bool = False,
              overrides: Sequence[str] = (), store: Store | str | None = None, backend: str = "local",
              run_id: str | None = None, progress: TrainingProgress | bool = False, device: Device = "cpu",
              address: str | None = None, workers: int | None = None) -> Sweep:
    """Run `target` (a phenomenon name or a spec file) at every point of the
    grid, on `backend` ("local", or "ray": a cluster at `address`, or a local
    Ray instance of `workers` CPUs)."""
    name = target if target in registry.phenomena else Path(target).stem
    sweep_id = run_id_for(run_id, f"sweep-{name}")
    chosen = get_backend(backend, address, workers)
    where = resolve_device(device)
    store = store if isinstance(store, Store) else Store(store)
    # a cluster's workers have memory of their own: there each trial is checked where it runs
    spec, trials = plan_trials(target, grid, sweep_id, seeds, quick, overrides, None if address else where)
    spec.update(chosen.options())
    with store.hold(sweep_id):
        store.create_run(sweep_id, name, spec, trials[0].seeds, kind="sweep")
        store.add_event(sweep_id, DEVICE_EVENT, {"device": str(where)})
        store.add_event(sweep_id, ENVIRONMENT_EVENT, environment())
        record = store.get_run(sweep_id)
        _drive(store, record, trials, chosen, _reporter(progress), lambda trial: where)
    return Sweep(store, sweep_id)


def resume_sweep(sweep_id: str, store: Store | str | None = None, progress: TrainingProgress | bool = False,
                 device: Device | Literal["recorded"] = "recorded", backend: str | None = None,
                 address: str | None = None, workers: int | None = None) -> Sweep:
    """Finish a stopped sweep: finished trials stay, stopped ones resume from
    their checkpoints (`resume_run`), the rest run; on the backend it was
    recorded with, unless `backend` (with `address`, `workers`) says another."""
    store = store if isinstance(store, Store) else Store(store)
    record = store.get_run(sweep_id)
    if record.kind != "sweep":
        raise LearnscopeError(f"run '{sweep_id}' is not a sweep (kind {record.kind})")
    if record.status == "finished":
        raise LearnscopeError(f"sweep '{sweep_id}' already finished; there is nothing to resume")
    if backend is None:
        spec = record.spec
        chosen = get_backend(spec.get("backend", "local"), spec.get("address"), spec.get("workers"))
    else:
        chosen = get_backend(backend, address, workers)
    where = resolve_device(recorded_device(store, sweep_id) if device == "recorded" else device)
    with store.hold(sweep_id):
        store.add_event(sweep_id, DEVICE_EVENT, {"device": str(where)})
        _drive(store, record, stored_trials(record), chosen, _reporter(progress),
               lambda trial: "recorded" if device == "recorded" else where)
    return Sweep(store, sweep_id)


class _Driver(TrialHost):
    """The sweep's process as its backend sees it: the one writer of the store."""

    def __init__(self, store: RunStore, sweep: RunRecord, reporter: TrainingProgress,
                 device_of: Callable[[Trial], Any]):
        self.store, self.sweep, self.reporter, self.device_of = store, sweep, reporter, device_of

    def finished(self, trial: Trial) -> bool:
        record = self.store.find_run(trial.run_id)
        return record is not None and record.status == "finished"

    def run_here(self, trial: Trial) -> TrialResult:
        return run_trial(self.store, self.sweep, trial, self.reporter, self.device_of(trial))

    def work_of(self, trial: Trial) -> TrialWork:
        return trial_work(self.store, self.sweep, trial, self.device_of(trial))

    def record(self, ops: Sequence[Op]) -> None:
        self.store.replay(ops)

    def result(self, trial: Trial) -> TrialResult:
        record = self.store.find_run(trial.run_id)
        if record is None:
            return TrialResult(trial.run_id, "not started")
        return TrialResult(trial.run_id, record.status, record.reason)

    def announce(self, message: str) -> None:
        if self.reporter.enabled:
            self.reporter.console.print(message)


def _drive(store: RunStore, record: RunRecord, trials: list[Trial], backend: Backend, reporter: TrainingProgress,
           device_of: Callable[[Trial], Any]) -> None:
    """Hand the trials to the backend, keeping the sweep's status honest."""
    sweep_id = record.id
    store.set_status(sweep_id, "running")
    try:
        results = backend.run(trials, _Driver(store, record, reporter, device_of))
    except KeyboardInterrupt:
        store.set_status(sweep_id, "interrupted", "interrupted by the user")
        raise RunInterrupted(sweep_id, getattr(store, "dir", None)) from None
    except BaseException as exc:
        store.set_status(sweep_id, "failed", f"{exc.__class__.__name__}: {exc}")
        raise
    # A trial whose every seed diverged ran to its end: a point of the grid where training blows up.
    blown = [r for r in results if r.status == "failed" and (r.reason or "").startswith(ALL_DIVERGED)]
    stopped = [r for r in results if r.status != "finished" and r not in blown]
    if stopped:
        store.set_status(sweep_id, "failed", f"{len(stopped)} trial(s) did not finish: "
                         + ", ".join(f"{r.run_id} ({r.status})" for r in stopped))
    else:
        store.set_status(sweep_id, "finished", f"every seed diverged in {', '.join(r.run_id for r in blown)}"
                         if blown else None)


# ------------------------------------------------------------------ reading a sweep


def lower_is_better(metric: str) -> bool:
    """Losses and errors fall as a model improves; everything else is ranked higher first."""
    name = metric.split(":", 1)[-1]
    return name.startswith(("loss", "error")) or "/loss" in name


@dataclass(frozen=True)
class TrialRow:
    """One trial as a sweep shows it, with its final metrics' per-seed values."""

    index: int
    run_id: str
    values: dict[str, Any]
    status: str
    duration: float | None  # seconds, for a trial that ended
    final: dict[str, list[float]]  # metric key (`metric`, or `ARM:metric` for a phenomenon) -> per seed


class Sweep:
    """A stored sweep, read back: its axes and trials."""

    def __init__(self, store: Store, sweep_id: str):
        self.store = store
        self.record = store.get_run(sweep_id)
        if self.record.kind != "sweep":
            raise LearnscopeError(f"run '{sweep_id}' is not a sweep (kind {self.record.kind})")

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def status(self) -> str:
        return self.store.get_run(self.id).status

    @property
    def axes(self) -> list[Axis]:
        return [Axis.from_dict(a) for a in self.record.spec["axes"]]

    def trials(self, with_metrics: bool = True) -> list[TrialRow]:
        rows = []
        for planned in self.record.spec["trials"]:
            record = self.store.find_run(planned["run_id"])
            status = "not started" if record is None else record.status
            duration = None
            if record is not None and record.finished is not None and status != "running":
                duration = record.finished - record.created
            final: dict[str, list[float]] = {}
            if with_metrics and record is not None:
                run = Run(self.store, record.id)
                phenomenon = record.kind == "phenomenon"
                frame = run.final()
                for (arm, name), group in frame.groupby(["arm", "name"], sort=True):
                    key = f"{arm}:{name}" if phenomenon else str(name)
                    final[key] = group.sort_values("seed")["value"].astype(float).tolist()
            rows.append(TrialRow(planned["index"], planned["run_id"], planned["values"], status, duration, final))
        return rows

    def metrics(self, rows: Sequence[TrialRow] | None = None) -> list[str]:
        """Final metric keys recorded by any trial, headline first."""
        rows = self.trials() if rows is None else rows
        keys = sorted({key for row in rows for key in row.final})
        headline = self.headline(keys)
        return [headline, *(k for k in keys if k != headline)] if headline else keys

    def headline(self, keys: Sequence[str]) -> str | None:
        """The metric trials are ranked by: accuracy/test, else loss/test, else
        the first (for a phenomenon: its headline metric in its first arm)."""
        if not keys:
            return None
        spec = self.record.spec
        candidates = ["accuracy/test", "loss/test"]
        if spec["kind"] == "phenomenon" and spec["name"] in registry.phenomena:
            headline = registry.phenomena.get(spec["name"]).headline
            arms = list(dict.fromkeys(k.split(":", 1)[0] for k in keys))
            candidates = [f"{arm}:{name}" for name in (headline, *candidates) for arm in arms]
        return next((c for c in candidates if c in keys), keys[0])

    def best(self, metric: str | None = None, rows: Sequence[TrialRow] | None = None) -> tuple[TrialRow, str]:
        """(the best trial by the mean of `metric` — the headline by default — , that metric)."""
        rows = self.trials() if rows is None else rows
        keys = self.metrics(rows)
        if metric is None:
            metric = keys[0] if keys else None
        elif metric not in keys:
            raise LearnscopeError(f"metric '{metric}' is not recorded by the trials of '{self.id}'; "
                                  f"{one_of(metric, keys)}")
        scored = [(mean_ci(row.final[metric])[0], row) for row in rows
                  if metric is not None and metric in row.final]
        scored = [(score, row) for score, row in scored if math.isfinite(score)]
        if metric is None or not scored:
            raise LearnscopeError(f"sweep '{self.id}' has no trial with a finite final metric to rank")
        sign = -1.0 if lower_is_better(metric) else 1.0
        return max(scored, key=lambda pair: (sign * pair[0], -pair[1].index))[1], metric


@dataclass(frozen=True)
class SensitivityRow:
    """The LR sensitivity (learnscope.sensitivity) of one curve of a sweep: the
    trials that differ only in the learning rate (`group`: the other axes'
    values; `arm`: a phenomenon's arm), per seed."""

    group: dict[str, Any]
    arm: str | None
    metric: str
    rates: list[float]
    seeds: list[int]
    values: list[float]  # per seed; NaN: no finite loss at any rate
    missing: list[str]  # trials of the curve not run yet: then no values

    def as_dict(self) -> dict[str, Any]:
        mean, low, high = mean_ci(self.values) if self.values else (math.nan,) * 3
        return {"group": self.group, "arm": self.arm, "metric": self.metric, "rates": self.rates, "seeds": self.seeds,
                "values": self.values, "mean": mean, "ci": [low, high], "missing": self.missing}


LR_KEY = "recipe.lr"


def lr_axis(sweep: Sweep, axis: str | None = None) -> Axis | None:
    """The sweep's learning-rate axis: `axis` (a label), or the one that sweeps `recipe.lr` over two or
    more rates; None if it has none."""
    axes = sweep.axes
    if axis is not None:
        chosen = [a for a in axes if a.label == axis]
        if not chosen:
            raise LearnscopeError(f"sweep '{sweep.id}' has no axis '{axis}'; {one_of(axis, [a.label for a in axes])}")
    else:
        chosen = [a for a in axes if a.key == LR_KEY]
        if len(chosen) > 1:
            raise LearnscopeError(f"sweep '{sweep.id}' sweeps {LR_KEY} on more than one arm "
                                  f"({', '.join(a.label for a in chosen)}); name the axis")
    if not chosen:
        return None
    values = chosen[0].values
    if len(values) < 2 or not all(isinstance(v, int | float) and not isinstance(v, bool) and v > 0 for v in values):
        if axis is None:  # a sweep that only sets the rate: no curve to summarize
            return None
        raise LearnscopeError(f"axis '{chosen[0].label}' of sweep '{sweep.id}' needs two or more positive learning "
                              f"rates for an LR sensitivity; it has {values}")
    return chosen[0]


def lr_sensitivity(sweep: Sweep, axis: str | None = None, metric: str = "loss/test") -> list[SensitivityRow]:
    """Per curve of the sweep along its learning-rate axis (see `lr_axis`): the LR
    sensitivity of `metric` (a loss, probed at step 0 as well: the loss at
    initialization caps each run), per seed. A seed that diverged in a trial
    counts its loss at initialization there. [] if the sweep has no such axis."""
    from learnscope.results import arms_data
    from learnscope.sensitivity import lr_sensitivity as sensitivity

    lr = lr_axis(sweep, axis)
    if lr is None:
        return []
    others = [a.label for a in sweep.axes if a.label != lr.label]
    curves: dict[str, list[dict[str, Any]]] = {}
    for planned in sweep.record.spec["trials"]:
        group = {label: planned["values"][label] for label in others}
        curves.setdefault(json.dumps(group, sort_keys=True, default=str), []).append(planned)
    rows = []
    for trials in curves.values():
        trials.sort(key=lambda t: t["values"][lr.label])
        group = {label: trials[0]["values"][label] for label in others}
        rates = [float(t["values"][lr.label]) for t in trials]
        records = [sweep.store.find_run(t["run_id"]) for t in trials]
        missing = [t["run_id"] for t, r in zip(trials, records) if r is None or r.status == "running"]
        arms = [arms_data(sweep.store, Run(sweep.store, r.id).arms, keep_diverged=True) if r else {}
                for r in records]
        for arm in (sorted(arms[0]) if arms and arms[0] else [""]):
            name = arm or None
            if missing:
                rows.append(SensitivityRow(group, name, metric, rates, sweep.record.seeds, [], missing))
                continue
            final, initial = [], []
            for trial, found in zip(trials, arms):
                data = found.get(arm)
                if data is None:
                    raise LearnscopeError(f"trial '{trial['run_id']}' has no arm '{arm}'")
                try:
                    steps, values = data.curve(metric)
                except KeyError:
                    raise LearnscopeError(f"trial '{trial['run_id']}' recorded no '{metric}'; an LR sensitivity "
                                          f"needs a loss probed at step 0 and at the end") from None
                if steps[0] != 0:
                    raise LearnscopeError(f"trial '{trial['run_id']}' first probed '{metric}' at step {steps[0]}; "
                                          f"an LR sensitivity needs the loss at initialization (step 0)")
                final.append(data.final_or_nan(metric))
                initial.append(values[:, 0])
            per_seed = sensitivity(np.stack(final), np.stack(initial))  # diverged seeds kept: every seed is here
            rows.append(SensitivityRow(group, name, metric, rates, sweep.record.seeds, per_seed.tolist(), []))
    return rows


def compare_sweep(sweep: Sweep, baseline: str | None = None, metrics: Sequence[str] = ()
                  ) -> tuple[str, str | None, list[Comparison]]:
    """Every trial against the baseline: the named trial, else the best by the
    headline metric's mean. Returns (baseline id, the ranking metric or None
    when a baseline was named, the comparisons)."""
    rows = sweep.trials()
    ids = [row.run_id for row in rows]
    ranked_by = None
    if baseline is None:
        best, ranked_by = sweep.best(None, rows)
        baseline = best.run_id
    elif baseline not in ids:
        short = {f"t{row.index}": row.run_id for row in rows}
        if baseline not in short:
            raise LearnscopeError(f"'{baseline}' is not a trial of sweep '{sweep.id}'; {one_of(baseline, ids)}")
        baseline = short[baseline]
    runs = [Run(sweep.store, row.run_id) for row in rows if row.status != "not started"]
    return baseline, ranked_by, compare_with(Run(sweep.store, baseline), runs, metrics)
