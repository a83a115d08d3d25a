"""What the unlearning phenomena compute beyond the framework, against hand
computations on synthetic curves:

- `crossing` (where a forget curve first comes down to a level, and the
  utility there, interpolated between probes) and `first_step(..., below=True)`;
- npo-vs-ga's matched-forget-quality comparison (`matched_utility`) and its
  signature on synthetic arms, passing and failing for the right reasons;
- ga-collapse's collapse level and signature on synthetic arms;
- the derived privacy leakage and cost against direct computations, on
  synthetic arms and through the store on a real run (`Run.summary`);
- the arms-compared table (`Phenomenon.comparison_table`), and the
  forget-quality-against-utility figure (its data, as the report draws it);
- the arms of every unlearning entry: original and oracle on the same
  experiment but the training split, methods started from the original;
- unlearning-scalability and -sustainability: signatures on synthetic arms,
  their arms (forget-set shares, chained requests) and sweep figures.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from learnscope import registry
from learnscope.catalog.ga_collapse import GACollapse, collapse_level
from learnscope.catalog.npo_vs_ga import NPOvsGA, matched_utility
from learnscope.catalog.unlearning import (
    CANARY_CHANCE,
    CANARY_QUICK,
    canary_base,
    crossing,
    method_names,
    unlearning_measures,
)
from learnscope.catalog.unlearning_methods import UnlearningMethods
from learnscope.catalog.unlearning_scalability import SHARES, UnlearningScalability
from learnscope.catalog.unlearning_sustainability import UnlearningSustainability
from learnscope.cli import main
from learnscope.report import report_run
from learnscope.report.figures import render
from learnscope.report.page import arm_table
from learnscope.results import ArmData, Sweep, Tradeoff, first_step
from learnscope.runner import run_phenomenon
from learnscope.runs import ArmTable, compare_arms
from learnscope.store import Store
from learnscope.store.sqlite import RunRecord

SEEDS = [0, 1, 2]


def arm(name: str, curves: dict[str, np.ndarray], steps, *, source: str | None = None, train_steps: int = 100,
        created: float = 0.0, finished: float | None = 10.0, seeds=SEEDS) -> ArmData:
    """Synthetic stored arm: per metric a [S, T] array over `steps`; its
    stored spec a valid experiment of `train_steps` steps (started from the
    arm `source`, e.g. "@original")."""
    rows = [{"run_id": f"run.{name}", "seed": seed, "step": int(step), "name": metric, "value": float(v)}
            for metric, values in curves.items() for seed, row in zip(seeds, np.atleast_2d(values))
            for step, v in zip(steps, row)]
    spec = canary_base(CANARY_QUICK).derive({"recipe.steps": train_steps, "seeds": list(seeds),
                                             "init_from": source}).to_dict()
    record = RunRecord(f"run.{name}", "test", "experiment", "run", name, spec, list(seeds), "finished", None,
                       created, finished, "0", "host")
    return ArmData(record, pd.DataFrame(rows))


# ---------------------------------------------------------------- crossing


def test_crossing_interpolates_between_the_probes_around_the_level():
    steps = np.array([0, 10, 20, 30])
    forget = np.array([
        [1.0, 0.8, 0.4, 0.2],  # crosses 0.5 between step 10 (0.8) and 20 (0.4): 3/4 of the way
        [1.0, 0.9, 0.7, 0.6],  # never comes down to 0.5
        [0.4, 0.3, 0.2, 0.1],  # already there at the first probe
        [1.0, 0.5, 0.1, 0.9],  # exactly at a probe; the later recovery does not matter
        [1.0, np.nan, 0.6, 0.6],  # NaN never counts as reached
    ])
    utility = np.array([
        [1.0, 0.9, 0.5, 0.3],
        [1.0, 1.0, 1.0, 1.0],
        [0.7, 0.6, 0.5, 0.4],
        [1.0, 0.8, 0.2, 0.1],
        [1.0, 1.0, 1.0, 1.0],
    ])
    at_step, at_utility = crossing(steps, forget, 0.5, utility)
    np.testing.assert_allclose(at_step, [17.5, np.nan, 0.0, 10.0, np.nan])
    np.testing.assert_allclose(at_utility, [0.9 + 0.75 * (0.5 - 0.9), np.nan, 0.7, 0.8, np.nan])


def test_crossing_takes_one_level_per_seed_and_defaults_to_its_own_values():
    steps = np.array([0, 4, 8])
    forget = np.array([[1.0, 0.6, 0.2], [1.0, 0.6, 0.2]])
    at_step, at_value = crossing(steps, forget, np.array([0.8, 0.3]))
    np.testing.assert_allclose(at_step, [2.0, 4 + 4 * 0.3 / 0.4])  # (1 - .8)/(1 - .6) of 4; (.6 - .3)/(.6 - .2) of 4
    np.testing.assert_allclose(at_value, [0.8, 0.3])


def test_first_step_at_or_below():
    steps = np.array([0, 5, 10])
    values = np.array([[1.0, 0.5, 0.2], [1.0, 0.9, 0.8], [0.1, 0.9, 0.1]])
    np.testing.assert_array_equal(first_step(steps, values, 0.5, below=True), [5.0, np.nan, 0.0])
    np.testing.assert_array_equal(first_step(steps, values, np.array([0.2, 0.8, 0.0]), below=True),
                                  [10.0, 10.0, np.nan])


# ---------------------------------------------------------------- npo-vs-ga

STEPS = np.array([0, 10, 20, 30, 40, 100])  # the last probe: the end of a 100-step budget
GA_FORGET = np.array([
    [1.0, 0.6, 0.3, 0.25, 0.3, 0.3],  # lowest 0.25, at step 30
    [1.0, 0.5, 0.2, 0.2, 0.2, 0.2],  # lowest 0.2, at step 20
    [1.0, 0.9, 0.5, 0.4, 0.4, 0.4],  # lowest 0.4, at step 30
])
GA_RETAIN = np.array([
    [1.0, 1.0, 0.6, 0.4, 0.3, 0.25],
    [1.0, 0.9, 0.5, 0.3, 0.25, 0.25],
    [1.0, 1.0, 0.9, 0.7, 0.5, 0.3],
])
NPO_FORGET = np.array([
    [1.0, 0.7, 0.35, 0.15, 0.05, 0.0],  # reaches 0.25 between 20 (0.35) and 30 (0.15): half way
    [1.0, 0.6, 0.3, 0.1, 0.05, 0.05],  # reaches 0.2 between 20 (0.3) and 30 (0.1): half way
    [1.0, 0.8, 0.6, 0.45, 0.45, 0.45],  # lowest 0.45 > GA's 0.4: the match is at 0.45
])
NPO_RETAIN = np.array([
    [1.0, 1.0, 0.98, 0.96, 0.95, 0.95],
    [1.0, 1.0, 1.0, 0.9, 0.9, 0.9],
    [1.0, 1.0, 1.0, 0.8, 0.8, 0.8],
])


def test_matched_utility_by_hand():
    level, at, where = matched_utility(STEPS, {"ga": GA_FORGET, "npo": NPO_FORGET},
                                       {"ga": GA_RETAIN, "npo": NPO_RETAIN})
    np.testing.assert_allclose(level, [0.25, 0.2, 0.45])
    # GA reaches its own lowest at a probe; seed 2's 0.45 between 20 (0.5) and 30 (0.4): half way
    np.testing.assert_allclose(where["ga"], [30.0, 20.0, 25.0])
    np.testing.assert_allclose(at["ga"], [0.4, 0.5, 0.8])
    np.testing.assert_allclose(where["npo"], [25.0, 25.0, 30.0])
    np.testing.assert_allclose(at["npo"], [0.97, 0.95, 0.8])


def canary_arms_by_hand(npo_retain=NPO_RETAIN, ga_retain=GA_RETAIN, budget=100):
    final = {"accuracy/forget": np.full((3, 1), 1.0), "accuracy/retain": np.full((3, 1), 1.0),
             "membership_auc/forget": np.full((3, 1), 0.99), "accuracy/test": np.full((3, 1), 0.8)}
    oracle = {"accuracy/forget": np.full((3, 1), 0.02), "accuracy/retain": np.full((3, 1), 1.0),
              "membership_auc/forget": np.array([[0.5], [0.45], [0.55]]), "accuracy/test": np.full((3, 1), 0.9)}
    auc = np.linspace(0.99, 0.4, len(STEPS))[None].repeat(3, 0)
    test = np.full((3, len(STEPS)), 0.8)
    return {
        "original": arm("original", final, [200], train_steps=200),
        "oracle": arm("oracle", oracle, [200], train_steps=200),
        "gradient-ascent": arm("gradient-ascent", {"accuracy/forget": GA_FORGET, "accuracy/retain": ga_retain,
                                                   "membership_auc/forget": auc, "accuracy/test": test},
                               STEPS, source="@original", train_steps=budget),
        "npo": arm("npo", {"accuracy/forget": NPO_FORGET, "accuracy/retain": npo_retain,
                           "membership_auc/forget": auc, "accuracy/test": test}, STEPS, source="@original",
                   train_steps=budget),
    }


def test_npo_vs_ga_signature_on_synthetic_arms():
    # collapse level: 0.25 + (1 - 0.25) / 2 = 0.625; GA reaches it at steps 20, 20, 40
    np.testing.assert_allclose(collapse_level(np.ones(3)), 0.625)
    verdict = NPOvsGA().check(canary_arms_by_hand())
    m = verdict.measures
    np.testing.assert_allclose(m["NPO gain at match"], [0.57, 0.45, 0.0], atol=1e-12)
    np.testing.assert_allclose(m["GA collapse step"], [20.0, 20.0, 40.0])
    assert np.isnan(m["NPO collapse step (nan: never)"]).all()
    assert verdict.passed == [True, True, False]
    assert "a gain of 0.000 < 0.1" in verdict.failures[2]


def test_npo_vs_ga_fails_when_npo_collapses_soon_after_ga():
    npo_retain = NPO_RETAIN.copy()
    npo_retain[0, 4:] = 0.5  # collapses at step 40 < 3 x GA's 20; its match (step 25) still keeps 0.97
    verdict = NPOvsGA().check(canary_arms_by_hand(npo_retain=npo_retain))
    assert not verdict.passed[0]
    assert verdict.failures[0] == "NPO collapsed at step 40, before 3 x gradient ascent's 20"


def test_npo_vs_ga_fails_when_ga_does_not_collapse():
    verdict = NPOvsGA().check(canary_arms_by_hand(ga_retain=np.maximum(GA_RETAIN, 0.7)))
    assert verdict.failures[0] == "gradient ascent did not collapse within its 100 steps"


def test_npo_vs_ga_never_collapsing_is_censored_at_its_budget():
    """NPO never collapses: its collapse counts as the end of its budget, which
    must be at least 3 x GA's collapse step (60 for GA's 20)."""
    verdict = NPOvsGA().check(canary_arms_by_hand(budget=50))
    assert verdict.failures[0] == ("NPO's budget of 50 steps is shorter than 3 x gradient ascent's collapse step 20")


def test_ga_collapse_signature_on_synthetic_arms():
    arms = canary_arms_by_hand()
    del arms["npo"]
    verdict = GACollapse().check(arms)
    m = verdict.measures
    # lowest AUC 0.4 against the oracle's 0.5, 0.45, 0.55
    np.testing.assert_allclose(m["lowest AUC - oracle AUC"], [-0.1, -0.05, -0.15])
    # retain accuracy where forget accuracy first reaches 0.5: seed 0 between 10 (0.6) and 20 (0.3), a third
    np.testing.assert_allclose(m["retain accuracy at half forgotten"], [1.0 - 0.4 / 3, 0.9, 0.9])
    np.testing.assert_allclose(m["final retain accuracy"], [0.25, 0.25, 0.3])
    assert verdict.passed == [False, True, True]
    assert verdict.failures[0].startswith("retain accuracy is 0.867 < 0.9 when forget accuracy reaches 0.5")
    assert CANARY_CHANCE == 0.25


# ---------------------------------------------------------------- derived measures


def test_privacy_leakage_and_cost_against_direct_computation():
    auc = "membership_auc/forget"
    arms = {
        "original": arm("original", {auc: np.array([[0.9, 0.99], [0.8, 0.97], [0.95, 1.0]])}, [0, 100],
                        created=0.0, finished=40.0),
        "oracle": arm("oracle", {auc: np.array([[0.6, 0.5], [0.5, 0.45], [0.5, 0.55]])}, [0, 100],
                      created=40.0, finished=80.0),
        "npo": arm("npo", {auc: np.array([[0.99, 0.7], [0.97, 0.6], [1.0, 0.5]])}, [0, 30], source="@original",
                   train_steps=30, created=80.0, finished=90.0),
    }
    measures = unlearning_measures(arms)
    assert set(measures) == {"original", "npo"}  # not the oracle; cost only for the arm that unlearns
    oracle_final = np.array([0.5, 0.45, 0.55])  # MUSE's (r − a) / (1 − r), a the arm's final AUC, r the oracle's
    np.testing.assert_allclose(measures["npo"]["privacy_leakage"], [-0.4, -0.15 / 0.55, 0.05 / 0.45])
    np.testing.assert_allclose(measures["original"]["privacy_leakage"],
                               (oracle_final - np.array([0.99, 0.97, 1.0])) / (1 - oracle_final))
    np.testing.assert_allclose(measures["npo"]["cost/updates"], [0.3] * 3)
    np.testing.assert_allclose(measures["npo"]["cost/wall_time"], [0.25] * 3)
    assert method_names(arms) == ["npo"]


def test_derived_privacy_leakage_through_the_store(tmp_path, capsys):
    """On a real (quick) run, the original's privacy leakage in the summary
    and in the verdict's measures is MUSE's (r − a) / (1 − r), seed by seed,
    from the two arms' stored final membership AUCs (a the original's, r
    the oracle's): negative, under-unlearned, as a model that never
    unlearned must read. `learnscope show` and the report lay the arms side
    by side."""
    store = Store(tmp_path / "store")
    run = run_phenomenon("unlearning-privacy", quick=True, store=store)
    metrics = run.metrics
    auc = metrics[metrics["name"] == "membership_auc/forget"]
    last = auc[auc["step"] == auc.groupby("arm")["step"].transform("max")].pivot(index="seed", columns="arm",
                                                                                  values="value")
    summary = run.summary().set_index(["arm", "metric"])
    stored = summary.loc[("original", "privacy_leakage"), "values"]
    a, r = last["original"].to_numpy(), last["oracle"].to_numpy()
    np.testing.assert_allclose(stored, (r - a) / (1 - r), rtol=1e-12)
    np.testing.assert_allclose(run.verdict.measures["original privacy leakage"], (r - a) / (1 - r), rtol=1e-12)
    assert (np.array(stored) < -0.5).all()
    assert ("oracle", "privacy_leakage") not in summary.index

    capsys.readouterr()
    assert main(["show", run.id, "--store", str(tmp_path / "store")]) == 0
    shown = capsys.readouterr().out
    assert "arms compared: mean [95% CI] across seeds" in shown and "privacy leakage" in shown
    page = report_run(run, tmp_path / "report").read_text()
    assert "Arms compared" in page and "<td>original</td>" in page


# ---------------------------------------------------------------- table and figure


def test_comparison_table_lays_the_arms_side_by_side():
    summary = pd.DataFrame([
        {"arm": "npo", "metric": "exact_match/forget", "mean": 0.1, "ci_low": 0.05, "ci_high": 0.2},
        {"arm": "npo", "metric": "privacy_leakage", "mean": -0.2, "ci_low": -0.3, "ci_high": -0.1},
        {"arm": "original", "metric": "exact_match/forget", "mean": 1.0, "ci_low": 1.0, "ci_high": 1.0},
    ])
    metrics = UnlearningMethods.comparison
    table = compare_arms(summary, metrics, ["original", "oracle", "npo"])
    assert table["arm"].tolist() == ["original", "npo"]  # the order given, arms the summary holds
    assert table.loc[1, "forget verbatim"] == 0.1 and table.loc[1, "privacy leakage low"] == -0.3
    assert np.isnan(table.loc[0, "privacy leakage"])  # measured for no original seed: blank
    html = arm_table(ArmTable("arms compared", ["forget verbatim", "privacy leakage"], table))
    assert "<tr><td>npo</td><td>0.1 [0.05, 0.2]</td><td>-0.2 [-0.3, -0.1]</td></tr>" in html


def test_tradeoff_figure_draws_a_curve_per_method_and_the_references():
    arms = canary_arms_by_hand()
    figures = NPOvsGA().figures(arms)
    assert len(figures) == 2 and all(isinstance(f, Tradeoff) for f in figures)
    data = figures[0]
    assert (data.x, data.y) == ("accuracy/forget", "accuracy/retain")
    caption, fig = render(data)
    assert caption == "npo-vs-ga: accuracy/forget against accuracy/retain along the unlearning steps"
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["gradient-ascent", "npo", "original", "oracle"]
    np.testing.assert_allclose(ax.lines[0].get_xdata(), GA_FORGET.mean(0))
    np.testing.assert_allclose(ax.lines[0].get_ydata(), GA_RETAIN.mean(0))


# ---------------------------------------------------------------- arms


@pytest.mark.parametrize("name", ["unlearning-privacy", "ga-collapse", "npo-vs-ga", "unlearning-methods"])
@pytest.mark.parametrize("quick", [True, False])
def test_arms_start_from_the_original_and_the_oracle_drops_the_forget_set(name, quick):
    arms = {arm.name: arm for arm in registry.phenomena.get(name)().arms(quick)}
    assert list(arms)[:2] == ["original", "oracle"]
    original, oracle = arms["original"].experiment, arms["oracle"].experiment
    assert arms["original"].starts_from is None and arms["oracle"].starts_from is None
    assert original.recipe.train_split == "train" and oracle.recipe.train_split == "retain"
    assert original.derive({"recipe.train_split": "retain"}) == oracle
    for method, a in arms.items():
        if method in ("original", "oracle"):
            continue
        exp = a.experiment
        assert a.starts_from == "original" and a.stored_spec()["init_from"] == "@original"
        assert exp.init_from is None and exp.recipe.train_split == "forget"
        assert exp.task == original.task and exp.model == original.model and exp.seeds == original.seeds
        assert [i.registry_name for i in exp.interventions] == [method]


# ---------------------------------------------------------------- scalability and sustainability


def finals(**metrics) -> dict[str, np.ndarray]:
    """Final values per seed as one-probe curves: metric -> [S, 1]."""
    return {metric.replace("__", "/"): np.asarray(values, dtype=float)[:, None] for metric, values in metrics.items()}


def scalability_arms(ga_large_test=(0.3, 0.3, 0.3)) -> dict[str, ArmData]:
    arms = {}
    for label in SHARES:
        ga_test = ga_large_test if label == "large" else (0.3, 0.4, 0.25)
        for name, forget, test in (("original", (1.0, 1.0, 1.0), (0.8, 0.7, 0.6)),
                                   ("oracle", (0.0, 0.05, 0.0), (0.9, 0.9, 0.95)),
                                   ("gradient-ascent", (0.2, 0.3, 0.25), ga_test),
                                   ("npo", (0.05, 0.1, 0.15), (0.85, 0.9, 0.8))):
            curves = finals(accuracy__forget=forget, accuracy__test=test)
            arms[f"{name}-{label}"] = arm(f"{name}-{label}", curves, [300])
    return arms


def test_scalability_signature_on_synthetic_arms():
    verdict = UnlearningScalability().check(scalability_arms(ga_large_test=(0.3, 0.3, 0.56)))
    # seed 2: NPO 0.8 - GA 0.25 >= 0.2 at small and medium; at large 0.8 - 0.56 still is, but GA keeps 0.56 > 0.55
    assert verdict.passed == [True, True, False]
    assert verdict.failures[2] == "canaries 37.5% of the training set: gradient ascent kept test accuracy 0.560 > 0.55"
    np.testing.assert_allclose(verdict.measures["NPO - GA test accuracy @3.1%"], [0.55, 0.5, 0.55])
    np.testing.assert_allclose(verdict.measures["NPO - oracle test accuracy @37.5% (reported)"], [-0.05, 0.0, -0.15])


def test_scalability_fails_at_the_first_size_where_npo_keeps_too_little():
    arms = scalability_arms()
    arms["npo-medium"] = arm("npo-medium", finals(accuracy__forget=(0.05, 0.2, 0.1), accuracy__test=(0.85, 0.9, 0.4)),
                             [300])
    verdict = UnlearningScalability().check(arms)
    assert verdict.passed == [True, False, False]
    assert verdict.failures[1] == "canaries 12.5% of the training set: NPO's forget accuracy 0.200 > 0.15"
    assert verdict.failures[2] == ("canaries 12.5% of the training set: NPO's test accuracy 0.400 exceeds gradient "
                                   "ascent's 0.250 by less than 0.2")


def test_scalability_arms_sweep_the_forget_set_with_their_own_original():
    for quick in (True, False):
        arms = {arm.name: arm for arm in UnlearningScalability().arms(quick)}
        samples = arms["original-small"].experiment.task.base.samples
        for label, share in SHARES.items():
            original = arms[f"original-{label}"].experiment
            assert original.task.count == share * samples  # 3.1%, 12.5%, 37.5% exactly
            oracle = arms[f"oracle-{label}"].experiment
            assert oracle.recipe.train_split == "retain" and oracle.task == original.task
            for method in ("gradient-ascent", "npo"):
                assert arms[f"{method}-{label}"].starts_from == f"original-{label}"
                assert arms[f"{method}-{label}"].experiment.task == original.task


def sustainability_arms(npo_relearns: float = 0.05) -> dict[str, ArmData]:
    def requests(*values):  # accuracy on requests 0..2, the same for every seed
        return {f"accuracy__forget__{q}": (v, v, v) for q, v in enumerate(values)}

    arms = {"original": arm("original", finals(**requests(1, 1, 1), accuracy__test=(0.8, 0.8, 0.8)), [200])}
    for r in range(3):
        arms[f"oracle-{r}"] = arm(f"oracle-{r}", finals(**requests(0, 0, 0), accuracy__test=(0.9, 0.9, 0.9)), [200])
        gone = [0.1] * (r + 1) + [1.0] * (2 - r)  # requests 0..r unlearned, the later ones still known
        ga = finals(**requests(*gone), accuracy__test=(0.3, 0.25, 0.5 - 0.1 * r))
        arms[f"gradient-ascent-{r}"] = arm(f"gradient-ascent-{r}", ga, [60])
        npo = [0.05] * (r + 1) + [1.0] * (2 - r)
        if r == 2:
            npo[0] = npo_relearns  # request 0 comes back while the last is unlearned
        arms[f"npo-{r}"] = arm(f"npo-{r}", finals(**requests(*npo), accuracy__test=(0.85, 0.5, 0.8)), [60])
    return arms


def test_sustainability_signature_on_synthetic_arms():
    verdict = UnlearningSustainability().check(sustainability_arms())
    # seed 1: NPO 0.5 - GA 0.25 = 0.25 >= 0.1; GA's 0.5 after the first request <= 0.6
    assert verdict.passed == [True, True, True]
    np.testing.assert_allclose(verdict.measures["NPO's highest accuracy on an unlearned request"], [0.05] * 3)
    np.testing.assert_allclose(verdict.measures["GA test accuracy after the last request"], [0.3, 0.25, 0.3])
    np.testing.assert_allclose(verdict.measures["NPO - oracle test accuracy after the last request (reported)"],
                               [-0.05, -0.4, -0.1])


def test_sustainability_fails_when_an_unlearned_request_comes_back():
    verdict = UnlearningSustainability().check(sustainability_arms(npo_relearns=0.5))
    assert verdict.passed == [False, False, False]
    assert verdict.failures[0] == "NPO's accuracy on an unlearned request rose to 0.500 > 0.45"


def test_sustainability_arms_chain_the_requests():
    for quick in (True, False):
        arms = {arm.name: arm for arm in UnlearningSustainability().arms(quick)}
        original = arms["original"].experiment
        assert original.task.requests == 3
        for r in range(3):
            assert arms[f"oracle-{r}"].experiment.recipe.train_split == f"keep/{r}"
            for method in ("gradient-ascent", "npo"):
                arm_r = arms[f"{method}-{r}"]
                assert arm_r.starts_from == ("original" if r == 0 else f"{method}-{r - 1}")
                assert arm_r.experiment.recipe.train_split == f"forget/{r}" and arm_r.experiment.task == original.task


def test_sweep_figures_draw_the_mean_of_the_finals_at_each_step_of_the_sweep():
    [scalability] = UnlearningScalability().figures(scalability_arms())
    assert isinstance(scalability, Sweep)
    caption, fig = render(scalability)
    assert caption == "unlearning-scalability: final accuracy against the size of the forget set"
    ax = fig.axes[0]  # test accuracy
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["original", "oracle", "gradient-ascent", "npo"]
    np.testing.assert_allclose(ax.lines[3].get_ydata(), [(0.85 + 0.9 + 0.8) / 3] * 3)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["3.1%", "12.5%", "37.5%"]
    [sustainability] = UnlearningSustainability().figures(sustainability_arms(npo_relearns=0.5))
    caption, fig = render(sustainability)
    assert caption == "unlearning-sustainability: accuracy after each sequential request"
    test, so_far = fig.axes[:2]
    ga_means = [0.8, 0.35, (0.3 + 0.25 + 0.4) / 3, (0.3 + 0.25 + 0.3) / 3]  # the original, then requests 1..3
    np.testing.assert_allclose(test.lines[1].get_ydata(), ga_means)
    np.testing.assert_allclose(so_far.lines[2].get_xdata(), [1, 2, 3])  # none unlearned: no point
    np.testing.assert_allclose(so_far.lines[2].get_ydata(), [0.05, 0.05, 0.5])  # NPO: request 0 back at the last


def test_curves_of_many_arms_get_a_panel_per_metric_and_the_legend_beside():
    """12 arms × 2 accuracy metrics: a panel per metric, one legend entry per
    arm beside the axes; one arm keeps both metrics in one panel."""
    from learnscope.report.plots import LEGEND_INSIDE, Series, family_figure

    arms = scalability_arms()
    series = [Series(name, data) for name, data in arms.items()]
    assert len(series) > LEGEND_INSIDE
    fig = family_figure("accuracy", ["accuracy/forget", "accuracy/test"], series)
    axes = [ax for ax in fig.axes if ax.lines]
    assert [ax.get_ylabel() for ax in axes] == ["accuracy/forget", "accuracy/test"]
    assert [len(ax.lines) for ax in axes] == [12, 12]
    assert [t.get_text() for t in fig.legends[0].get_texts()] == list(arms)
    np.testing.assert_allclose(axes[1].lines[3].get_ydata(), [(0.85 + 0.9 + 0.8) / 3])  # npo-small's test accuracy
    single = family_figure("accuracy", ["accuracy/forget", "accuracy/test"], series[:1])
    assert len(single.axes) == 1 and len(single.axes[0].lines) == 2 and single.axes[0].get_legend() is not None
