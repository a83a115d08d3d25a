"""No global randomness: the same spec and seeds on the same machine give
identical metrics, run after run, whatever else ran in the process."""

from __future__ import annotations

import pandas as pd
import torch

from learnscope.runner import run_experiment, run_phenomenon
from learnscope.spec import Experiment
from learnscope.store.sqlite import Store

QUICK_SPEC = {
    "task": {"name": "gaussian-mixture", "classes": 3, "dim": 6, "samples": 120, "test_samples": 40,
             "label_noise": 0.1},
    "model": {"name": "mlp", "hidden": [16, 16]},
    "recipe": {"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "steps": 40, "batch_size": 16,
               "schedule": "warmup_cosine", "warmup_steps": 5, "probe_every": 10,
               "probe_log_points": 0},
    "interventions": [{"name": "grokfast", "filter": "ma", "window": 5}],
    "probes": ["accuracy", "loss", "weight_norm", "relative_weight_change"],
    "seeds": [0, 1, 2],
}


def metric_rows(run) -> pd.DataFrame:
    frame = run.metrics.drop(columns=["run_id"])
    return frame.sort_values(["arm", "name", "seed", "step"]).reset_index(drop=True)


def test_same_spec_twice_gives_identical_metrics(tmp_path):
    exp = Experiment.model_validate(QUICK_SPEC)
    first = run_experiment(exp, store=Store(tmp_path / "a"))
    # disturb every global generator in between: nothing may depend on them
    torch.manual_seed(12345)
    torch.rand(100)
    second = run_experiment(exp, store=Store(tmp_path / "b"))
    assert first.id != second.id and first.status == second.status == "finished"

    a, b = metric_rows(first), metric_rows(second)
    # 3 seeds x 5 probe steps x (4 accuracy/loss + 2 noise-split accuracy/loss + 2 weight metrics)
    assert len(a) == 3 * 5 * (2 * 4 + 2)
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    # not vacuous: training changed the metrics and the seeds differ
    loss = a[a["name"] == "loss/train"]
    assert loss[loss["step"] == 40]["value"].mean() < loss[loss["step"] == 0]["value"].mean()
    assert loss[loss["step"] == 40]["value"].nunique() == 3


def test_same_spec_twice_in_one_store_gives_identical_metrics(tmp_path):
    store = Store(tmp_path / "s")
    exp = Experiment.model_validate({**QUICK_SPEC, "seeds": [2]})
    first = run_experiment(exp, store=store)
    second = run_experiment(exp, store=store)
    pd.testing.assert_frame_equal(metric_rows(first), metric_rows(second), check_exact=True)
    # and seed 2 alone matches seed 2 of the 3-seed ensemble's data order, step for step
    ensemble = run_experiment(Experiment.model_validate(QUICK_SPEC), store=store)
    e = metric_rows(ensemble)
    e = e[e["seed"] == 2].reset_index(drop=True)
    pd.testing.assert_frame_equal(metric_rows(first), e, check_exact=False, rtol=1e-5)


def test_phenomenon_twice_gives_identical_metrics(tmp_path):
    runs = [
        run_phenomenon("grokking", quick=True, overrides=["recipe.steps=100", "recipe.probe_log_points=0"], seeds=2,
                       store=Store(tmp_path / name))
        for name in ("a", "b")
    ]
    a, b = (metric_rows(r) for r in runs)
    assert set(a["arm"]) == {"grokking", "no-weight-decay"}
    assert sorted(a["seed"].unique()) == [0, 1]
    assert a["step"].max() == 100
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    # the arms differ (weight decay matters), so the comparison is not of two copies of one thing
    wn = a[(a["name"] == "weight_norm") & (a["step"] == 100)]
    assert not (wn[wn["arm"] == "grokking"]["value"].to_numpy()
                == wn[wn["arm"] == "no-weight-decay"]["value"].to_numpy()).any()
    # and the stored verdicts agree
    assert runs[0].verdict.as_dict().keys() == runs[1].verdict.as_dict().keys()
    assert runs[0].verdict.passed == runs[1].verdict.passed
    assert runs[0].verdict.failures == runs[1].verdict.failures
