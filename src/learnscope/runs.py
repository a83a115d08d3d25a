"""A Run as the library hands it back: everything read from the store."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

from learnscope import registry
from learnscope.catalog.base import Phenomenon
from learnscope.continual import RANK_BY, RANKING, arm_measures
from learnscope.results import ArmData, Verdict, arms_data
from learnscope.stats import summarize
from learnscope.store.base import RunRecord, RunStore

if TYPE_CHECKING:  # pandas loads with the first summary, not with the runner that returns a Run
    import pandas as pd


@dataclass
class ArmTable:
    """Arms side by side: per row an arm (and its rank, when ranked), per
    column label its mean across seeds and 95% CI (`label`, `label low`,
    `label high`)."""

    title: str
    labels: list[str]
    rows: pd.DataFrame


def compare_arms(summary: pd.DataFrame, metrics: dict[str, str], order: Sequence[str] = (),
                 rank_by: Sequence[str] = ()) -> pd.DataFrame:
    """From a `Run.summary()`: one row per arm holding any of `metrics` ({metric:
    label}), in `order` (else the summary's); with `rank_by`, sorted best first
    by those metrics' means (higher is better), with a `rank` column."""
    import pandas as pd

    cells = summary.set_index(["arm", "metric"]) if not summary.empty else None
    found = [] if cells is None else list(dict.fromkeys(a for a, m in cells.index if m in metrics))
    arms = [a for a in order if a in found] + [a for a in found if a not in order]
    rows = []
    for arm in arms:
        row = {"arm": arm}
        for metric, label in metrics.items():
            have = (arm, metric) in cells.index
            for suffix, stat in (("", "mean"), (" low", "ci_low"), (" high", "ci_high")):
                row[label + suffix] = float(cells.loc[(arm, metric), stat]) if have else float("nan")
        rows.append(row)
    table = pd.DataFrame(rows, columns=["arm", *(label + s for label in metrics.values() for s in ("", " low", " high"))])
    if rank_by and not table.empty:
        table = table.sort_values([metrics[m] for m in rank_by], ascending=False, kind="stable", na_position="last")
        table.insert(0, "rank", range(1, len(table) + 1))
    return table.reset_index(drop=True)


class Run:
    def __init__(self, store: RunStore, run_id: str):
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
        """Each arm's metrics as per-seed arrays, without the seeds that diverged in any arm
        (kept for a phenomenon whose signature reads divergence, `Phenomenon.keeps_diverged`)."""
        phenomenon = self._phenomenon()
        return arms_data(self.store, self.arms, phenomenon is not None and phenomenon.keeps_diverged, self.metrics)

    def final(self) -> pd.DataFrame:
        """The last recorded value of every metric, per arm and seed, without
        the seeds that diverged in any arm; and measures derived from the
        stored metrics at the last step: for a stream, the continual measures
        (`continual/...`, learnscope.continual); for a phenomenon, what it
        derives across its arms (`Phenomenon.derived`, e.g. privacy leakage
        against the retrain oracle)."""
        import pandas as pd

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

    def tables(self, summary: pd.DataFrame | None = None) -> list[ArmTable]:
        """The arms compared, as summaries and reports show them: a stream's
        arms ranked by their continual measures, and the measures a phenomenon
        compares (`Phenomenon.comparison`). Only tables of two arms or more."""
        summary = self.summary() if summary is None else summary
        tables = [ArmTable("ranking by average accuracy", list(RANKING.values()),
                           compare_arms(summary, RANKING, rank_by=RANK_BY))]
        phenomenon = self._phenomenon()
        if phenomenon is not None and phenomenon.comparison:
            order = [arm.arm for arm in self.arms]
            tables.append(ArmTable("arms compared", list(phenomenon.comparison.values()),
                                   compare_arms(summary, phenomenon.comparison, order)))
        return [t for t in tables if len(t.rows) >= 2]

    def _phenomenon(self) -> Phenomenon | None:
        name = self.record.name
        if self.record.kind != "phenomenon" or name not in registry.phenomena:
            return None
        return registry.phenomena.get(name)()

    def summary(self) -> pd.DataFrame:
        """Per arm and metric: mean, std and 95% CI (Student t) across seeds,
        and the per-seed final values."""
        import pandas as pd

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

    def __repr__(self) -> str:
        return f"Run({self.id!r}, status={self.status!r})"
