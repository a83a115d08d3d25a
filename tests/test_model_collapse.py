"""Model collapse: the linear model (mlp, hidden []) against numpy's least
squares, the linear-regression task, self-consume's replace and accumulate
chains against numpy OLS recursions seed by seed, the closed forms against a
numpy Monte Carlo (and the tolerance the signature allows), ensembles against
single runs, exact resume, and bad specs refused in one line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from helpers import assert_resumes_exactly, cli
from learnscope.catalog.base import arm_table
from learnscope.catalog.model_collapse import ROUNDS, SIZES, TOLERANCE, closed_forms, collapse_arms
from learnscope.errors import SpecError
from learnscope.runner import run_experiment, start_from
from learnscope.seeding import generator
from learnscope.spec import Experiment
from learnscope.store.checkpoints import read_checkpoint
from learnscope.store.sqlite import Store
from learnscope.tasks.linear_regression import LinearRegression
from learnscope.train.trainer import Trainer

DIM, SAMPLES, NOISE, SEEDS = 4, 16, 0.5, [0, 1, 2]


def spec(copies=1, interventions=(), seeds=SEEDS, steps=300) -> dict:
    return {"task": {"name": "linear-regression", "dim": DIM, "samples": SAMPLES, "test_samples": 64, "noise": NOISE,
                     "copies": copies},
            "model": {"name": "mlp", "hidden": [], "bias": False},
            "recipe": {"optimizer": "sgd", "lr": 0.2, "steps": steps, "probe_every": steps, "probe_log_points": 0},
            "interventions": list(interventions), "probes": [{"name": "loss", "splits": ["test"]}],
            "seeds": list(seeds)}


def replace(source: str, generation: int) -> dict:
    return {"name": "self-consume", "mode": "replace", "sources": [source], "noise": NOISE, "generation": generation}


def accumulate(*sources: str) -> dict:
    return {"name": "self-consume", "mode": "accumulate", "sources": list(sources), "noise": NOISE}


def weights(store, run_id: str) -> np.ndarray:
    """[S, d]: each seed's fitted linear map, from the run's last checkpoint."""
    return read_checkpoint(store, run_id).tensors["param/head.weight"][:, :, 0].double().numpy()


def real_data(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(X [T, d], y [T], w* [d]) of a seed, drawn as the task draws them."""
    data = LinearRegression(dim=DIM, samples=SAMPLES, noise=NOISE, test_samples=64).build(seed)
    x, y = data.inputs[:SAMPLES].double().numpy(), data.targets[:SAMPLES, 0].double().numpy()
    return x, y, np.linalg.lstsq(data.inputs[SAMPLES:].double().numpy(), data.targets[SAMPLES:, 0].double().numpy(),
                                 rcond=None)[0]


def noise(seed: int, stream: int) -> np.ndarray:
    return NOISE * torch.randn(SAMPLES, 1, generator=generator(seed, "self-consume", stream))[:, 0].double().numpy()


def ols(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.linalg.lstsq(x, y, rcond=None)[0]


@pytest.fixture
def chains(tmp_path):
    """gen0, then replace-1..3 and accumulate-1..3 (each reading every earlier generation), by run id."""
    store = Store(tmp_path / "store")
    run_experiment(Experiment.model_validate(spec()), store, run_id="gen0")
    for g in range(1, 4):
        run_experiment(Experiment.model_validate(spec(1, [replace("gen0" if g == 1 else f"replace-{g - 1}", g)])),
                       store, run_id=f"replace-{g}")
        sources = ["gen0"] + [f"accumulate-{j}" for j in range(1, g)]
        run_experiment(Experiment.model_validate(spec(g + 1, [accumulate(*sources)])), store, run_id=f"accumulate-{g}")
    return store


def test_a_linear_mlp_has_the_sites_and_reaches_the_least_squares_solution(tmp_path):
    trainer = Trainer(Experiment.model_validate(spec()))
    assert trainer.model.site_names() == ["embed", "penultimate", "logits"]
    assert [name for name, _ in trainer.model.named_parameters()] == ["head.weight"]
    x, _ = trainer.data.splits["test"]
    seen = {}

    def record(site, h):
        seen[site] = h
        return h

    out = trainer.model(x, record)
    torch.testing.assert_close(seen["embed"], x)
    torch.testing.assert_close(seen["penultimate"], x)
    torch.testing.assert_close(seen["logits"], out)
    torch.testing.assert_close(out, torch.bmm(x, trainer.model.head.weight))
    store = Store(tmp_path / "store")
    run_experiment(Experiment.model_validate(spec()), store, run_id="gen0")
    for k, seed in enumerate(SEEDS):
        x, y, _ = real_data(seed)
        np.testing.assert_allclose(weights(store, "gen0")[k], ols(x, y), rtol=0, atol=1e-5)
    with pytest.raises(SpecError, match="mirror_init pairs the last hidden layer's units; hidden is"):
        Experiment.model_validate({**spec(), "model": {"name": "mlp", "hidden": [], "mirror_init": True}})


def test_the_task_draws_alike_with_any_number_of_copies_and_keeps_its_test_labels_clean():
    one, three = LinearRegression(dim=3, samples=5).build(7), LinearRegression(dim=3, samples=5, copies=3).build(7)
    for a, b in zip((one.inputs, one.targets), (three.inputs, three.targets)):
        torch.testing.assert_close(a, b)
    assert three.splits["train"].tolist() == list(range(5)) * 3
    test = one.splits["test"]
    w = ols(one.inputs[test].double().numpy(), one.targets[test, 0].double().numpy())
    np.testing.assert_allclose(one.inputs[test].double().numpy() @ w, one.targets[test, 0].double().numpy(), atol=1e-5)
    residual = one.targets[:5, 0].double().numpy() - one.inputs[:5].double().numpy() @ w
    assert np.abs(residual).max() > 0.1  # the training labels are noisy


def test_replace_and_accumulate_are_the_numpy_ols_recursions_seed_by_seed(chains):
    for k, seed in enumerate(SEEDS):
        x, y, w_star = real_data(seed)
        w0 = ols(x, y)
        np.testing.assert_allclose(weights(chains, "gen0")[k], w0, atol=1e-5)
        replaced, labels, accumulated = w0, [y], [w0]
        for g in range(1, 4):
            # replace: the previous fit's labels on the same inputs, with fresh noise of the generation's stream
            replaced = ols(x, x @ replaced + noise(seed, g))
            np.testing.assert_allclose(weights(chains, f"replace-{g}")[k], replaced, atol=1e-4)
            # accumulate: least squares on [X; ...; X] with every generation's labels
            labels.append(x @ accumulated[-1] + noise(seed, g))
            accumulated.append(ols(np.concatenate([x] * len(labels)), np.concatenate(labels)))
            np.testing.assert_allclose(weights(chains, f"accumulate-{g}")[k], accumulated[-1], atol=1e-4)
            # accumulating is the running mean of the labels' fits (the source's ŵ_n − w* = Σ P E_i / i)
            np.testing.assert_allclose(accumulated[-1], ols(x, np.mean(labels, 0)), atol=1e-10)
        # the test loss (clean labels) is the excess error on the test inputs
        test_loss = chains.metrics("replace-3")
        final = test_loss[(test_loss.seed == seed) & (test_loss.name == "loss/test")].value.iloc[-1]
        data = LinearRegression(dim=DIM, samples=SAMPLES, noise=NOISE, test_samples=64).build(seed)
        x_test = data.inputs[SAMPLES:].double().numpy()
        np.testing.assert_allclose(final, np.mean((x_test @ (weights(chains, "replace-3")[k] - w_star)) ** 2),
                                   rtol=1e-4)


def monte_carlo(rng, dim: int, samples: int, noise_std: float, generations: int) -> tuple[np.ndarray, np.ndarray]:
    """One seed of the loop in numpy: the excess errors ‖ŵ − w*‖² at n = 1..generations, (replace, accumulate)."""
    x = rng.standard_normal((samples, dim))
    w = rng.standard_normal(dim) / np.sqrt(dim)
    pinv = np.linalg.pinv(x)
    labels = [x @ w + noise_std * rng.standard_normal(samples)]
    replaced = accumulated = pinv @ labels[0]
    rep, acc = [np.sum((replaced - w) ** 2)], [np.sum((accumulated - w) ** 2)]
    for _ in range(1, generations):
        fresh = noise_std * rng.standard_normal(samples)
        replaced = pinv @ (x @ replaced + fresh)
        labels.append(x @ accumulated + fresh)
        accumulated = pinv @ np.mean(labels, 0)
        rep.append(np.sum((replaced - w) ** 2))
        acc.append(np.sum((accumulated - w) ** 2))
    return np.array(rep), np.array(acc)


def test_the_closed_forms_against_a_numpy_monte_carlo_and_the_tolerance_against_16_seed_means():
    rng = np.random.default_rng(0)
    dim, samples, generations = 10, 40, 6
    runs = [monte_carlo(rng, dim, samples, 0.7, generations) for _ in range(8000)]
    rep, acc = (np.array(part) for part in zip(*runs))
    rep_cf, acc_cf = closed_forms(dim, samples, 0.7, generations)
    np.testing.assert_allclose(rep.mean(0), rep_cf, rtol=0.04)  # about 4 standard errors of the mean
    np.testing.assert_allclose(acc.mean(0), acc_cf, rtol=0.04)
    assert acc_cf[-1] < 0.7 ** 2 * dim / (samples - dim - 1) * np.pi ** 2 / 6
    # the signature's tolerance: above the 99th percentile of a 16-seed mean's largest deviation, at the quick size
    size = SIZES[True]
    rep_cf, acc_cf = closed_forms(size["dim"], size["samples"], 1.0, ROUNDS + 1)
    deviations = []
    for _ in range(200):
        rep, acc = (np.array(part) for part in zip(*[monte_carlo(rng, size["dim"], size["samples"], 1.0,
                                                                 ROUNDS + 1) for _ in range(16)]))
        deviations.append(max(np.abs(rep.mean(0) / rep_cf - 1).max(), np.abs(acc.mean(0) / acc_cf - 1).max()))
    assert np.percentile(deviations, 99) < TOLERANCE


def test_an_ensemble_consumes_as_its_single_runs_do(chains):
    for raw in (spec(1, [replace("gen0", 1)], seeds=[2]), spec(3, [accumulate("gen0", "accumulate-1")], seeds=[2])):
        alone = run_experiment(Experiment.model_validate(raw), chains)
        ensemble_id = "replace-1" if raw["task"]["copies"] == 1 else "accumulate-2"
        np.testing.assert_allclose(weights(chains, alone.id)[0], weights(chains, ensemble_id)[2], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("raw", [spec(1, [replace("gen0", 1)], steps=8), spec(3, [accumulate("gen0", "replace-1")], steps=8)])
def test_a_resumed_generation_trains_on_the_same_labels(chains, raw):
    def build():
        trainer = Trainer(Experiment.model_validate(raw))
        start_from(chains, trainer)
        return trainer

    assert_resumes_exactly(build)


def test_the_phenomenon_chains_every_generation_to_earlier_arms():
    for quick in (True, False):
        table = arm_table(collapse_arms(quick), "model-collapse")
        assert len(table) == 1 + 2 * ROUNDS
        assert [r.source for r in table[f"accumulate-{ROUNDS}"].experiment.runs_read()] == (
            ["@gen0"] + [f"@accumulate-{j}" for j in range(1, ROUNDS)])
        assert [r.source for r in table[f"replace-{ROUNDS}"].experiment.runs_read()] == [f"@replace-{ROUNDS - 1}"]
        assert [r.path for r in table["accumulate-2"].experiment.runs_read()] == [
            "interventions[0].sources[0]", "interventions[0].sources[1]"]


@pytest.mark.parametrize("change, message", [
    ({"interventions": [replace("nope", 1)]}, "unknown run id 'nope'"),
    ({"interventions": [accumulate("gen0", "@accumulate-1")], "task": {**spec()["task"], "copies": 3}},
     "interventions[0].sources[1]: '@accumulate-1' names an arm of a phenomenon"),
    ({"interventions": [{**replace("gen0", 1), "sources": ["gen0", "gen0"]}]},
     "mode replace reads the previous generation alone; sources has 2"),
    ({"interventions": [{**replace("gen0", 1), "generation": None}]}, "mode replace needs `generation`"),
    ({"interventions": [{**accumulate("gen0"), "generation": 3}]}, "generation is len(sources) = 1, not 3"),
    ({"interventions": [accumulate("gen0", "gen0")]},
     "mode accumulate with 2 earlier generations needs a training split of 3 copies of the real examples"),
    ({"interventions": [replace("gen0", 1)], "task": {"name": "linear-regression", "dim": 5, "samples": SAMPLES}},
     "interventions[0].sources[0]: the model of run 'gen0' does not match this model"),
    ({"interventions": [replace("gen0", 1)], "task": {"name": "gaussian-mixture", "classes": 2, "dim": DIM},
      "probes": ["loss"]}, "self-consume labels with a model's outputs plus Gaussian noise: a regression task"),
    ({"interventions": [{**replace("gen0", 1), "noise": -1}]}, "interventions[0].noise"),
])
def test_bad_generations_are_refused_in_one_line(tmp_path, capsys, change, message):
    store = Store(tmp_path / "store")
    run_experiment(Experiment.model_validate(spec(steps=2)), store, run_id="gen0")
    path = tmp_path / "spec.json"
    path.write_text(json.dumps({**spec(), **change}))
    code, out, err = cli(capsys, "run", path, "--store", tmp_path / "store")
    assert code == 2, (out, err)
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
