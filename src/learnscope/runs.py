"""A Run as the library hands it back: everything read from the store."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import pandas as pd

from learnscope import registry
from learnscope.catalog.base import ArmData, Phenomenon, Verdict
from learnscope.continual import arm_measures
from learnscope.stats import summarize
from learnscope.store.sqlite import RunRecord, Store


class Run:
    def __init__(self, store: Store, run_id: str):
        self.store = store
        self.record: RunRecord = store.get_run(run_id)

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def status(self) -> str:
        return self.store.get_run(self.id).status

    @cached_property
    def arms(self) -> list[RunRecord]:
        """The runs holding metrics: the children of a phenomenon, or the run itself."""
        return self.store.children(self.id) if self.record.kind == "phenomenon" else [self.record]

    @property
    def metrics(self) -> pd.DataFrame:
        """Every metric row, with an `arm` column: run_id, arm, seed, step, name, value."""
        frame = self.store.metrics([arm.id for arm in self.arms])
        arm_of = {arm.id: arm.arm or "" for arm in self.arms}
        frame.insert(1, "arm", frame["run_id"].map(arm_of))
        return frame

    @cached_property
    def diverged(self) -> dict[str, dict[int, int]]:
        """Per arm, the seeds that diverged (frozen, left out of statistics): seed -> step."""
        return {arm.arm or "": found for arm in self.arms if (found := self.store.diverged(arm.id))}

    def arm_data(self) -> dict[str, ArmData]:
        """Each arm's metrics as per-seed arrays, without the seeds that diverged in any arm."""
        frame = self.metrics
        left_out = {seed for seeds in self.diverged.values() for seed in seeds}
        return {arm.arm or "": ArmData(arm, frame[frame["run_id"] == arm.id], left_out) for arm in self.arms}

    def final(self) -> pd.DataFrame:
        """The last recorded value of every metric, per arm and seed, without
        the seeds that diverged in any arm; and measures derived from the
        stored metrics at the last step: for a stream, the continual measures
        (`continual/...`, learnscope.continual); for a phenomenon, what it
        derives across its arms (`Phenomenon.derived`, e.g. privacy leakage
        against the retrain oracle)."""
        frames = []
        arms = self.arm_data()
        derived = {label: {f"continual/{name}": values for name, values in (arm_measures(data) or {}).items()}
                   for label, data in arms.items()}
        phenomenon = self._phenomenon()
        if phenomenon is not None:
            for label, found in phenomenon.derived(arms).items():
                derived[label] = {**derived[label], **found}
        for label, data in arms.items():
            frame = data.frame[data.frame["seed"].isin(data.seeds)]
            if frame.empty:
                continue
            last = frame.sort_values("step").groupby(["name", "seed"], sort=False).tail(1)
            frames.append(last.assign(arm=label))
            step = int(frame["step"].max())
            frames.append(pd.DataFrame(
                [{"run_id": data.record.id, "arm": label, "seed": seed, "step": step, "name": name,
                  "value": float(value)}
                 for name, values in derived[label].items() for seed, value in zip(data.seeds, values)],
                columns=["run_id", "arm", "seed", "step", "name", "value"],
            ))
        if not frames:
            return pd.DataFrame(columns=["run_id", "arm", "seed", "step", "name", "value"])
        final = pd.concat(frames, ignore_index=True)[["run_id", "arm", "seed", "step", "name", "value"]]
        return final.sort_values(["arm", "name", "seed"]).reset_index(drop=True)

    def _phenomenon(self) -> Phenomenon | None:
        name = self.record.name
        if self.record.kind != "phenomenon" or name not in registry.phenomena:
            return None
        return registry.phenomena.get(name)()

    def summary(self) -> pd.DataFrame:
        """Per arm and metric: mean, std and 95% bootstrap CI across seeds,
        and the per-seed final values."""
        rows = []
        final = self.final()
        if final.empty:
            return pd.DataFrame(columns=["arm", "metric", "n", "mean", "std", "ci_low", "ci_high", "values"])
        for (arm, name), group in final.groupby(["arm", "name"], sort=True):
            values = group.sort_values("seed")["value"].tolist()
            rows.append({"arm": arm, "metric": name, **summarize(values).as_dict(), "values": values})
        return pd.DataFrame(rows)

    @property
    def verdict(self) -> Verdict | None:
        events = self.store.events(self.id, "signature")
        return Verdict.from_dict(events[-1]["detail"]) if events else None

    def report(self, out: str | Path | None = None) -> Path:
        from learnscope.report import write_report

        return write_report(self.store, [self.id], out)

    def __repr__(self) -> str:
        return f"Run({self.id!r}, status={self.status!r})"
