"""Weight averaging (SWA, EMA): the average against a plain loop over the
weight snapshots, probes before the last update see the trajectory itself,
ensembles against single runs, exact resume, bad input in one line, and the
phenomenon's ratio of standard deviations with its bootstrap interval."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from helpers import assert_resumes_exactly, cli
from learnscope.catalog.weight_averaging import std_ratio
from learnscope.spec import Experiment
from learnscope.train.trainer import Trainer

TASK = {"name": "gaussian-mixture", "classes": 4, "dim": 6, "samples": 96, "test_samples": 32}
STEPS = 9


def spec(interventions=(), seeds=(0, 1, 2), optimizer="sgd", steps=STEPS) -> dict:
    return {"task": TASK, "model": {"name": "mlp", "hidden": [12]},
            "recipe": {"optimizer": optimizer, "lr": 0.2, "batch_size": 8, "steps": steps, "probe_every": 3,
                       "probe_log_points": 0},
            "interventions": list(interventions), "probes": [{"name": "accuracy", "splits": ["test"]}],
            "seeds": list(seeds)}


def averaging(**fields) -> dict:
    return {"name": "weight-averaging", **fields}


def trainer(*args, **kwargs) -> Trainer:
    return Trainer(Experiment.model_validate(spec(*args, **kwargs)))


def snapshots(seeds=(0, 1, 2), optimizer="sgd") -> list[list[torch.Tensor]]:
    """The weights after each update 1..STEPS of the plain run (the averaged run's trajectory)."""
    plain = trainer(seeds=seeds, optimizer=optimizer)
    taken = []
    for _ in range(STEPS):
        plain.train_step()
        taken.append([p.detach().clone() for p in plain.params])
    return taken


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_swa_is_the_mean_of_the_averaged_snapshots(optimizer):
    taken = snapshots(optimizer=optimizer)
    averaged = trainer([averaging(mode="swa", start=3, every=2)], optimizer=optimizer)
    averaged.run()
    chosen = [taken[u - 1] for u in (3, 5, 7, 9)]  # updates 3, 5, 7, 9 (counted from 1)
    for i, p in enumerate(averaged.params):
        expected = torch.stack([snap[i] for snap in chosen]).mean(0)
        torch.testing.assert_close(p.detach(), expected, rtol=1e-6, atol=1e-6)
    assert averaged.interventions[0].count == 4


def test_ema_against_a_plain_loop():
    taken = snapshots()
    averaged = trainer([averaging(mode="ema", start=4, decay=0.7)])
    averaged.run()
    for i, p in enumerate(averaged.params):
        expected = taken[3][i].clone()  # the first average is a copy (as AveragedModel's)
        for u in range(5, STEPS + 1):
            expected = 0.7 * expected + 0.3 * taken[u - 1][i]
        torch.testing.assert_close(p.detach(), expected, rtol=1e-6, atol=1e-6)


def test_an_average_of_the_last_update_alone_is_the_last_iterate():
    plain, averaged = trainer(), trainer([averaging(start=STEPS)])
    plain.run()
    averaged.run()
    for p, q in zip(plain.params, averaged.params):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


def test_probes_see_the_trajectory_until_the_average_replaces_it():
    seen: dict[str, dict[int, torch.Tensor]] = {"plain": {}, "swa": {}}
    for name, ivs in (("plain", []), ("swa", [averaging(start=2)])):
        t = trainer(ivs)
        t.run(on_probe=lambda step, metrics, name=name: seen[name].update({step: metrics["accuracy/test"]}))
    assert sorted(seen["plain"]) == sorted(seen["swa"]) == [0, 3, 6, 9]
    for step in (0, 3, 6):
        torch.testing.assert_close(seen["plain"][step], seen["swa"][step], rtol=0, atol=0)
    # at the end the averaged model is measured: the same as the average's own accuracy
    taken = snapshots()
    model = trainer()
    with torch.no_grad():
        for i, p in enumerate(model.params):
            p.copy_(torch.stack([snap[i] for snap in taken[1:]]).mean(0))
    torch.testing.assert_close(model.measure()["accuracy/test"], seen["swa"][STEPS])


@pytest.mark.parametrize("fields", [{"mode": "swa", "start": 2, "every": 3}, {"mode": "ema", "start": 4, "decay": 0.9}])
def test_an_ensemble_averages_as_its_single_runs_do(fields):
    ensemble = trainer([averaging(**fields)])
    ensemble.run()
    for k, seed in enumerate((0, 1, 2)):
        alone = trainer([averaging(**fields)], seeds=(seed,))
        alone.run()
        for p, q in zip(ensemble.params, alone.params):
            torch.testing.assert_close(p[k:k + 1], q)


@pytest.mark.parametrize("fields,cut", [({"mode": "swa", "start": 3}, 5), ({"mode": "ema", "start": 3, "every": 2}, 6),
                                        ({"mode": "swa", "start": 6}, 2)])
def test_a_resumed_run_averages_exactly_as_one_never_stopped(fields, cut):
    assert_resumes_exactly(lambda: trainer([averaging(**fields)], optimizer="adam"), first_steps=cut)


@pytest.mark.parametrize("change,message", [
    ({"start": STEPS + 1}, f"interventions[0].start: update {STEPS + 1} is past the run's last, {STEPS}"),
    ({"mode": "polyak"}, "interventions[0].mode"),
    ({"decay": 1.0}, "interventions[0].decay"),
    ({"every": 0}, "interventions[0].every"),
])
def test_bad_averaging_is_refused_in_one_line(tmp_path, capsys, change, message):
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec([averaging(**change)])))
    code, out, err = cli(capsys, "run", path, "--store", tmp_path / "store")
    assert code == 2, (out, err)
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def test_the_ratio_of_standard_deviations_and_its_bootstrap_interval():
    rng = np.random.default_rng(3)
    last = 0.9 + 0.05 * rng.standard_normal(32)
    averaged = 0.95 + 0.4 * (last - 0.9) + 0.005 * rng.standard_normal(32)  # a fraction of the same spread
    ratio, low, high = std_ratio(last, averaged)
    assert ratio == pytest.approx(np.std(averaged, ddof=1) / np.std(last, ddof=1))
    assert low < ratio < high < 1
    assert std_ratio(last, averaged) == (ratio, low, high)  # a fixed generator: the same interval every time
    # a seed that diverged (NaN in either arm) is left out of both
    with_nan = std_ratio(np.append(last, np.nan), np.append(averaged, 0.5))
    assert with_nan[0] == pytest.approx(ratio)
    # a plain percentile bootstrap over seeds, by hand, lands near BCa's interval
    picks = np.random.default_rng(0).integers(0, 32, size=(4000, 32))
    boot = np.std(averaged[picks], ddof=1, axis=1) / np.std(last[picks], ddof=1, axis=1)
    lo, hi = np.percentile(boot, [2.5, 97.5])
    assert abs(lo - low) < 0.05 and abs(hi - high) < 0.05
