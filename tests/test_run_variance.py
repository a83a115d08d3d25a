"""Run-to-run variance: the agreement statistics against numpy, the probe
against each seed's own predictions, one seed, an ensemble's members
against the same seeds run alone, the experiment's `data_seed`, bad
input in one line, and the phenomenon's quick verdict."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from helpers import cli
from learnscope.errors import LearnscopeError
from learnscope.probes.agreement import agreement_statistics
from learnscope.probes.base import ProbeContext
from learnscope.runner import run_experiment
from learnscope.spec import Experiment
from learnscope.store.sqlite import Store
from learnscope.train.trainer import Trainer

TASK = {"name": "gaussian-mixture", "classes": 4, "dim": 6, "separation": 1.5, "samples": 64, "test_samples": 60}
STATISTICS = ("all_right", "none_right", "disagree", "variance", "independent_variance")


def spec(seeds=(0, 1, 2, 3, 4), probe: dict | None = None, task: dict | None = None, steps=6,
         data_seed: int | None = 7) -> dict:
    return {"task": task or TASK, "model": {"name": "mlp", "hidden": [16]}, "data_seed": data_seed,
            "recipe": {"optimizer": "adam", "lr": 3e-2, "batch_size": 8, "steps": steps, "probe_every": 3,
                       "probe_log_points": 0},
            "probes": [probe or {"name": "agreement", "split": "test", "test_size": 20}], "seeds": list(seeds)}


def trained(**fields) -> Trainer:
    t = Trainer(Experiment.model_validate(spec(**fields)))
    for state in t.interventions:
        state.on_start(t)
    for _ in range(t.recipe.steps):
        t.train_step()
    return t


def reference(correct: np.ndarray, test_size: int) -> dict[str, float]:
    """The statistics by their definitions: per-example rates, then test set by test set."""
    seeds, examples = correct.shape
    rate = correct.mean(0)
    sets = examples // test_size
    variances, predictions = [], []
    for k in range(sets):
        block = correct[:, k * test_size:(k + 1) * test_size]
        accuracy = block.mean(1)
        variances.append(np.sum((accuracy - accuracy.mean()) ** 2) / (seeds - 1))
        p = block.mean(0)
        # each example's correctness: an unbiased variance across seeds, summed as if independent
        predictions.append(sum(np.var(block[:, i], ddof=1) for i in range(test_size)) / test_size ** 2)
        assert predictions[-1] == pytest.approx(np.sum(p * (1 - p)) * seeds / (seeds - 1) / test_size ** 2)
    return {"all_right": np.mean(rate == 1), "none_right": np.mean(rate == 0),
            "disagree": np.mean((rate > 0) & (rate < 1)), "variance": np.mean(variances),
            "independent_variance": np.mean(predictions)}


@pytest.mark.parametrize("test_size", [None, 7, 25])
def test_the_statistics_against_numpy(test_size):
    rng = np.random.default_rng(0)
    p = rng.uniform(size=50) ** 2
    p[:5], p[5:9] = 1.0, 0.0  # some every seed gets right, some none
    correct = (rng.uniform(size=(9, 50)) < p).astype(float)
    got = agreement_statistics(torch.tensor(correct, dtype=torch.float32), test_size)
    want = reference(correct, test_size or 50)
    for name in STATISTICS:
        assert got[name].item() == pytest.approx(want[name], rel=1e-12, abs=1e-15), name
    assert (got["all_right"] + got["none_right"] + got["disagree"]).item() == pytest.approx(1.0)


def test_one_test_set_s_variance_less_the_prediction_is_its_covariances():
    rng = np.random.default_rng(1)
    correct = (rng.uniform(size=(6, 30)) < 0.6).astype(float)
    got = agreement_statistics(torch.tensor(correct))
    covariance = np.cov(correct, rowvar=False)  # [30, 30] across the seeds (ddof 1)
    off_diagonal = covariance.sum() - np.trace(covariance)
    assert (got["variance"] - got["independent_variance"]).item() == pytest.approx(off_diagonal / 30 ** 2, abs=1e-15)


def test_the_probe_against_each_seed_s_own_predictions():
    t = trained()
    got = t.experiment.probes[0].measure(ProbeContext(t, t.step, t.probe_needs))
    x, y = t.data.splits["test"]
    correct = []
    for k, seed in enumerate(t.seeds):  # each seed's model alone, on its inputs, without the probe machinery
        with torch.no_grad():
            single = Trainer(Experiment.model_validate(spec(seeds=[seed])))
            for q, p in zip(single.params, t.params):
                q.copy_(p[k : k + 1])
            single.model.eval()
            correct.append((single.model(x[k : k + 1])[0].argmax(-1) == y[k]).double().numpy())
    want = reference(np.stack(correct), 20)
    assert 0 < want["disagree"] < 1  # the check has something to compare
    for name in STATISTICS:
        values = got[f"agreement/test/{name}"]
        assert values.shape == (5,) and bool((values == values[0]).all()), name  # the ensemble's: one value for all
        assert values[0].item() == pytest.approx(want[name], rel=1e-5, abs=1e-7), name


def test_an_ensemble_s_members_classify_as_the_same_seeds_alone():
    ensemble = trained(seeds=(0, 1, 2, 3, 4))
    alone = trained(seeds=(1, 3))
    x, y = ensemble.data.splits["test"]
    assert torch.equal(alone.data.splits["test"][0], x[[1, 3]])  # the same examples: data_seed, not the seed
    with torch.no_grad():
        ensemble.model.eval()
        alone.model.eval()
        members = ensemble.model(x)[[1, 3]]
        singles = alone.model(x[[1, 3]])
    torch.testing.assert_close(singles, members, rtol=1e-4, atol=1e-5)
    assert torch.equal(singles.argmax(-1) == y[[1, 3]], members.argmax(-1) == y[[1, 3]])


def test_one_seed_alone_runs_and_has_no_variance(tmp_path):
    t = trained(seeds=(4,))
    got = t.experiment.probes[0].measure(ProbeContext(t, t.step, t.probe_needs))
    assert got["agreement/test/all_right"].item() + got["agreement/test/none_right"].item() == pytest.approx(1.0)
    assert got["agreement/test/disagree"].item() == 0
    assert torch.isnan(got["agreement/test/variance"]).all() and torch.isnan(got["agreement/test/independent_variance"]).all()
    run = run_experiment(Experiment.model_validate(spec(seeds=(4,))), Store(tmp_path / "s"))  # the memory estimate too
    assert run.record.status == "finished"


def test_data_seed_gives_every_seed_one_dataset_and_leaves_the_default_alone():
    shared = Trainer(Experiment.model_validate(spec(seeds=(0, 5))))
    own = Trainer(Experiment.model_validate(spec(seeds=(7, 0), data_seed=None)))
    for split, (x, y) in shared.data.splits.items():  # every seed builds seed 7's data, as seed 7 itself does
        for k in (0, 1):
            assert torch.equal(x[k], own.data.splits[split][0][0]) and torch.equal(y[k], own.data.splits[split][1][0])
    assert not torch.equal(own.data.splits["train"][0][1], own.data.splits["train"][0][0])  # by default, its own
    assert not torch.equal(shared.params[0][0], shared.params[0][1])  # initializations stay the seeds' own


def test_seed_dependent_data_are_refused():
    t = Trainer(Experiment.model_validate(spec(data_seed=None)))
    with pytest.raises(LearnscopeError, match="the seeds' 'test' examples differ"):
        t.experiment.probes[0].measure(ProbeContext(t, t.step, t.probe_needs))


@pytest.mark.parametrize("probe, message", [
    ({"name": "agreement", "split": "valid"}, "probes[0].split: unknown split 'valid'"),
    ({"name": "agreement", "test_size": 0}, "probes[0].test_size"),
    ({"name": "agreement", "max_examples": 10, "test_size": 20}, "test_size (20) must be at most max_examples (10)"),
    ({"name": "agreement", "test_size": 61}, "agreement.test_size: 61 examples per test set, but split 'test' has 60"),
])
def test_bad_input_is_one_line(tmp_path, capsys, probe, message):
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec(probe=probe)))
    code, out, err = cli(capsys, "run", path, "--store", tmp_path / "store")
    assert code == 2, (out, err)
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def test_the_quick_phenomenon_holds(tmp_path, capsys):
    code, out, err = cli(capsys, "verify", "run-to-run-variance", "--quick", "--store", tmp_path / "s")
    assert code == 0, (out, err)
    assert "PASS (16/16 seeds)" in out
