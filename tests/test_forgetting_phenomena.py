"""The forgetting entries of the catalog (catalog/forgetting.py and the
phenomena built on it), checked against hand computations:

- the stability-gap measure on synthetic curves: one that dips and
  recovers, one that rises without dipping, one that dips and stays down;
  the window clipped at the block's end; and read from a run's stored
  per-experience accuracies (old experiences averaged per switch);
- the paired comparisons (`forgets_less`, the first failing comparison
  given, the strategy comparison's leader and margin) on hand-made measures;
- the ranking of arms by their continual measures, one computation shown
  by the HTML report and by the command line in the same order;
- every forgetting phenomenon's arms share stream, model, recipe and seeds:
  they differ only in their strategy.

Each phenomenon's signature at --quick size runs in tests/test_phenomena.py.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from learnscope import registry
from learnscope.catalog.continual_strategies import leader
from learnscope.catalog.forgetting import forgets_less, forgetting_against
from learnscope.catalog.stability_gap import Gap, claim_gaps, stability_gap, stability_gap_experiment, switch_gaps
from learnscope.continual import RANK_BY, RANKING
from learnscope.report.page import arm_table
from learnscope.results import ArmData, Bands, Signature
from learnscope.runs import ArmTable, compare_arms
from learnscope.store.sqlite import RunRecord

# ---------------------------------------------------------------- the stability-gap measure

STEPS = np.array([0, 100, 101, 102, 103, 104, 105, 150, 200])
CURVES = np.array([
    # at the switch (step 100) 0.9; lowest in the window at step 102 (0.4); ends at 0.86
    [0.2, 0.9, 0.7, 0.4, 0.5, 0.8, 0.85, 0.88, 0.86],
    # rises after the switch: no dip (its window minimum 0.55 lies above 0.5 at the switch)
    [0.1, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.9],
    # dips and stays down: the lowest value, 0.1, is first reached at step 103, and it ends there
    [0.3, 0.9, 0.3, 0.2, 0.1, 0.1, 0.1, 0.1, 0.1],
    # its lowest value (0.0 at step 150) lies outside the window of 5 updates: not part of the gap
    [0.5, 0.9, 0.8, 0.8, 0.8, 0.8, 0.8, 0.0, 0.9],
])


def test_stability_gap_equals_the_hand_computation():
    gap = stability_gap(STEPS, CURVES, start=100, stop=200, window=5)
    np.testing.assert_allclose(gap.before, [0.9, 0.5, 0.9, 0.9])
    np.testing.assert_allclose(gap.minimum, [0.4, 0.55, 0.1, 0.8])
    np.testing.assert_array_equal(gap.at, [2, 1, 3, 1])
    np.testing.assert_allclose(gap.final, [0.86, 0.9, 0.1, 0.9])
    np.testing.assert_allclose(gap.recovery, [0.46, 0.35, 0.0, 0.1], atol=1e-12)
    np.testing.assert_allclose(gap.dip, [0.5, -0.05, 0.8, 0.1], atol=1e-12)


def gap_failures(gaps: list[Gap], min_dip: float, min_recovery: float) -> list[str]:
    """Per seed, why the stability-gap claims fail ('' where they hold)."""
    sig = Signature(list(range(len(gaps[0].minimum))))
    claim_gaps(sig, gaps, min_dip, min_recovery)
    return sig.failures()


def test_only_a_curve_that_dips_and_recovers_has_a_stability_gap():
    failures = gap_failures([stability_gap(STEPS, CURVES, 100, 200, 5)], min_dip=0.25, min_recovery=0.25)
    assert failures[0] == ""
    assert "a dip of -0.050 < 0.25" in failures[1]  # rising: recovers without dipping
    assert "a recovery of 0.000 < 0.25" in failures[2]  # forgetting, not a gap
    assert "a dip of 0.100 < 0.25" in failures[3]


def test_every_switch_must_show_the_gap():
    dips = Gap(np.array([0.9]), np.array([0.2]), np.array([3]), np.array([0.9]))
    shallow = Gap(np.array([0.9]), np.array([0.8]), np.array([3]), np.array([0.9]))
    assert gap_failures([dips, dips], 0.25, 0.25) == [""]
    assert gap_failures([dips, shallow], 0.25, 0.25)[0].startswith("after switch 2,")


def test_the_window_ends_with_the_block_and_its_ends_must_be_probed():
    # block 100..102: only steps 101 and 102 are in it, whatever the window
    gap = stability_gap(STEPS, CURVES[0], start=100, stop=102, window=5)
    assert gap.minimum.tolist() == [0.4] and gap.final.tolist() == [0.4]
    with pytest.raises(ValueError, match="step 120 was not probed"):
        stability_gap(STEPS, CURVES, start=100, stop=120, window=5)
    with pytest.raises(ValueError, match="no probed step"):
        stability_gap(STEPS, CURVES, start=105, stop=200, window=20)


def test_switch_gaps_average_the_old_experiences_of_a_stored_run():
    """A stream of 5 experiences x 100 updates, window 25, with made-up accuracy
    curves probed every step: on experience j, 0.9 + 0.01 j, except that every
    switch into experience k drops experience j < k to 0.2 + 0.1 j at update 4
    of the window (and 0.5 at update 3), seed 1 a further 0.1 lower."""
    experiment = stability_gap_experiment(quick=True).derive({"seeds": 2})
    spec = experiment.to_dict()
    steps = np.arange(501)
    rows = []
    for seed in (0, 1):
        for j in range(5):
            curve = np.full(len(steps), 0.9 + 0.01 * j)
            for start in (100, 200, 300, 400):
                if j < start // 100:
                    curve[start + 3] = 0.5
                    curve[start + 4] = 0.2 + 0.1 * j - 0.1 * seed
            rows += [{"run_id": "r", "seed": seed, "step": int(s), "name": f"accuracy/test/{j}", "value": v}
                     for s, v in zip(steps, curve)]
    record = RunRecord("r", "stability-gap", "experiment", None, "replay", spec, [0, 1], "finished", None, 0.0,
                       None, "", "")
    arm = ArmData(record, pd.DataFrame(rows))
    gaps = switch_gaps(arm)
    assert len(gaps) == 4
    for k, gap in enumerate(gaps, 1):  # the switch into experience k: experiences 0..k-1 are old
        old = range(k)
        np.testing.assert_allclose(gap.before, np.mean([0.9 + 0.01 * j for j in old]))
        np.testing.assert_allclose(gap.minimum, [np.mean([0.2 + 0.1 * j - 0.1 * s for j in old]) for s in (0, 1)])
        np.testing.assert_array_equal(gap.at, [4, 4])
        np.testing.assert_allclose(gap.final, gap.before)
    [data] = registry.phenomena.get("stability-gap")().figures({"replay": arm})
    assert isinstance(data, Bands) and [label for label, _, _ in data.lines] == [
        f"switch to experience {k}" for k in (1, 2, 3, 4)]
    for _, x, values in data.lines:  # the window after the switch, updates 0..25, for both seeds
        assert x.tolist() == list(range(26)) and values.shape == (2, 26)
    from learnscope.report.figures import render

    caption, figure = render(data)
    assert caption.startswith("stability gap") and len(figure.axes[0].lines) == 4  # one curve per switch


# ---------------------------------------------------------------- paired comparisons


def measures(**forgetting) -> dict[str, dict[str, np.ndarray]]:
    return {arm: {"forgetting": np.array(values)} for arm, values in forgetting.items()}


def test_forgets_less_compares_seed_by_seed():
    found = measures(naive=[0.6, 0.5, 0.0], ewc=[0.3, 0.45, 0.0])
    sig = Signature([0, 1, 2])
    forgetting_against(sig, found, "ewc", "naive")
    holds = forgets_less(sig, found, "ewc", "naive", 0.85)
    failures = sig.failures()
    assert holds.tolist() == [True, False, True]
    assert failures[0] == ""
    assert failures[1] == "ewc forgot 0.450 > 0.85 x naive's 0.500"
    assert failures[2] == ""  # 0 <= 0.85 x 0: nothing was forgotten by either
    np.testing.assert_allclose(sig.measures["ewc / naive forgetting"], [0.5, 0.9, np.nan])
    assert sig.measures["naive forgetting"] == [0.6, 0.5, 0.0]
    assert list(sig.measures) == ["naive forgetting", "ewc forgetting", "ewc / naive forgetting"]


def test_a_seed_failing_two_comparisons_is_given_the_first():
    found = measures(naive=[0.5, 0.5, 0.5], ewc=[0.4, 0.1, 0.4], replay=[0.3, 0.3, 0.1])
    sig = Signature([0, 1, 2])
    forgets_less(sig, found, "replay", "ewc", 0.5)  # fails in seeds 0 and 1
    forgets_less(sig, found, "replay", "naive", 0.5)  # fails in seeds 0 and 1 too
    assert sig.failures() == ["replay forgot 0.300 > 0.5 x ewc's 0.400", "replay forgot 0.300 > 0.5 x ewc's 0.100", ""]


def test_leader_and_its_margin_per_seed():
    found = {"naive": {"forgetting": np.array([0.5, 0.2])}, "ewc": {"forgetting": np.array([0.3, 0.25])},
             "joint": {"forgetting": np.array([0.0, 0.0])}}
    best, margin = leader(found, "forgetting")
    assert best.tolist() == [0, 1]  # naive in seed 0, ewc in seed 1
    np.testing.assert_allclose(margin, [0.2, 0.05])


# ---------------------------------------------------------------- the ranking


def summary_of(arms: dict[str, dict[str, float]]) -> pd.DataFrame:
    """A Run.summary()-shaped frame: continual measures with CIs mean ± 0.05, plus another metric."""
    rows = []
    for arm, values in arms.items():
        for name, mean in values.items():
            rows.append({"arm": arm, "metric": f"continual/{name}", "n": 4, "mean": mean, "std": 0.1,
                         "ci_low": mean - 0.05, "ci_high": mean + 0.05, "values": [mean] * 4})
        rows.append({"arm": arm, "metric": "accuracy/test", "n": 4, "mean": 2.0, "std": 0.0, "ci_low": 2.0,
                     "ci_high": 2.0, "values": [2.0] * 4})
    return pd.DataFrame(rows)


SUMMARY = summary_of({
    "naive": {"average_accuracy": 0.55, "backward_transfer": -0.48, "forgetting": 0.48, "forward_transfer": 0.0},
    "ewc": {"average_accuracy": 0.66, "backward_transfer": -0.30, "forgetting": 0.30, "forward_transfer": 0.01},
    "joint": {"average_accuracy": 0.89, "backward_transfer": 0.08, "forgetting": -0.01, "forward_transfer": 0.2},
    "si": {"average_accuracy": 0.66, "backward_transfer": -0.25, "forgetting": 0.25, "forward_transfer": 0.0},
})


def ranked(summary: pd.DataFrame) -> pd.DataFrame:
    return compare_arms(summary, RANKING, rank_by=RANK_BY)


def test_ranking_orders_by_average_accuracy_then_backward_transfer():
    table = ranked(SUMMARY)
    assert table["arm"].tolist() == ["joint", "si", "ewc", "naive"]  # si before ewc: the same average accuracy,
    assert table["rank"].tolist() == [1, 2, 3, 4]                    # higher backward transfer
    row = table.iloc[1]
    assert (row["average accuracy"], row["backward transfer"], row["forgetting"]) == (0.66, -0.25, 0.25)
    assert row["average accuracy low"] == pytest.approx(0.61)
    assert row["forgetting high"] == pytest.approx(0.30)
    assert "accuracy/test" not in table.columns


def test_nothing_to_rank_without_continual_measures():
    assert len(ranked(SUMMARY[SUMMARY["arm"] == "ewc"])) == 1  # one arm: no table is shown (Run.tables)
    assert ranked(SUMMARY[SUMMARY["metric"] == "accuracy/test"]).empty


def test_report_and_command_line_show_the_same_ranking():
    from rich.console import Console

    from learnscope.cli import _arm_table

    table = ArmTable("ranking by average accuracy", list(RANKING.values()), ranked(SUMMARY))
    page = arm_table(table)
    assert [page.index(f"<td>{arm}</td>") for arm in ("joint", "si", "ewc", "naive")] == sorted(
        page.index(f"<td>{arm}</td>") for arm in ("joint", "si", "ewc", "naive"))
    assert "<td>0.66 [0.61, 0.71]</td>" in page
    console = Console(width=200, record=True)
    console.print(_arm_table(table))
    rows = [line.split("│") for line in console.export_text().splitlines() if line.startswith("│")]
    rows = [cells for cells in rows if cells[1].strip().isdigit()]
    assert [(cells[1].strip(), cells[2].strip()) for cells in rows] == [
        ("1", "joint"), ("2", "si"), ("3", "ewc"), ("4", "naive")]
    assert rows[1][3].strip() == "0.66 [0.61, 0.71]"


# ---------------------------------------------------------------- paired arms

FORGETTING_ENTRIES = ["catastrophic-forgetting", "ewc", "replay", "power-law-rehearsal", "stability-gap",
                      "continual-strategies"]


@pytest.mark.parametrize("quick", [True, False], ids=["quick", "full"])
@pytest.mark.parametrize("name", FORGETTING_ENTRIES)
def test_arms_differ_only_in_their_strategy(name, quick):
    arms = registry.phenomena.get(name)().arms(quick)
    assert all(arm.starts_from is None for arm in arms)
    specs = [{k: v for k, v in arm.experiment.to_dict().items() if k != "interventions"} for arm in arms]
    assert all(spec == specs[0] for spec in specs)
    assert specs[0]["task"]["name"] in ("permuted-stream", "split-stream")
    assert specs[0]["task"]["base"]["name"] == "digits"


def test_the_strategy_comparison_has_eight_arms_on_five_experiences_and_eight_seeds():
    arms = registry.phenomena.get("continual-strategies")().arms(quick=False)
    assert [arm.name for arm in arms] == ["naive", "joint", "agem", "ewc", "lwf", "power-law-rehearsal", "replay", "si"]
    for arm in arms:
        exp = arm.experiment
        assert exp.task.experiences == 5 and exp.seed_list == list(range(8))
        assert [iv.registry_name for iv in exp.interventions] == ([] if arm.name == "naive" else [arm.name])
