"""Curated self-consumption: the categorical task, the curation draw against
a numpy hand computation seed by seed (and its frequencies against the
exact curated distribution), the distribution probe against direct
computations, ensembles against single runs, exact resume, the phenomenon's
arms, and bad specs refused in one line."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch

from helpers import assert_resumes_exactly, cli
from learnscope.catalog.base import arm_table
from learnscope.catalog.curated_self_consumption import ROUNDS, chain_arms
from learnscope.errors import LearnscopeError
from learnscope.interventions.curate import STREAM, curate_labels
from learnscope.probes.distribution import distribution_measures
from learnscope.runner import run_experiment, start_from
from learnscope.seeding import generator
from learnscope.spec import Experiment
from learnscope.store.checkpoints import read_checkpoint
from learnscope.store.sqlite import Store
from learnscope.tasks.categorical import Categorical
from learnscope.train.trainer import Trainer

ITEMS, SAMPLES, BETA, SEEDS = 6, 200, 3.0, [0, 1, 2]
TASK = {"name": "categorical", "items": ITEMS, "zipf": 0.5, "samples": SAMPLES, "test_samples": 50, "reward": BETA}


def spec(interventions=(), seeds=SEEDS, steps=150) -> dict:
    return {"task": TASK, "model": {"name": "mlp", "hidden": []},
            "recipe": {"optimizer": "adam", "lr": 0.1, "steps": steps, "probe_every": steps, "probe_log_points": 0},
            "interventions": list(interventions), "probes": ["distribution"], "seeds": list(seeds)}


def curate(source: str, generation: int = 1, **fields) -> dict:
    return {"name": "curate", "source": source, "candidates": 3, "generation": generation, **fields}


def logits(store, run_id: str) -> np.ndarray:
    """[S, M]: each seed's logits on the constant input 1, from the run's last checkpoint."""
    tensors = read_checkpoint(store, run_id).tensors
    return (tensors["param/head.weight"][:, 0, :] + tensors["param/head.bias"].reshape(len(SEEDS), -1)).double().numpy()


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def hand_curation(p: np.ndarray, rewards: np.ndarray, candidates: int, seed: int, generation: int) -> np.ndarray:
    """The curated labels [N] of one seed, in numpy, from the same uniforms: K candidates by inverse CDF, one
    kept with probability exp(r) / Σ exp(r) over the K."""
    gen = generator(seed, STREAM, generation)
    n = p.shape[0]
    u = torch.rand(n, candidates, generator=gen, dtype=torch.float64).numpy()
    v = torch.rand(n, 1, generator=gen, dtype=torch.float64).numpy()[:, 0]
    labels = np.empty(n, dtype=np.int64)
    for i in range(n):
        cdf = np.cumsum(p[i])
        drawn = [min(int(np.sum(cdf <= u[i, k])), p.shape[1] - 1) for k in range(candidates)]
        weights = np.exp(rewards[drawn])
        choice = min(int(np.sum(np.cumsum(weights / weights.sum()) <= v[i])), candidates - 1)
        labels[i] = drawn[choice]
    return labels


@pytest.fixture
def store(tmp_path):
    store = Store(tmp_path / "store")
    run_experiment(Experiment.model_validate(spec()), store, run_id="gen0")
    run_experiment(Experiment.model_validate(spec([curate("gen0")])), store, run_id="curated-1")
    run_experiment(Experiment.model_validate(spec([curate("gen0", real_fraction=0.5)])), store, run_id="mixed-1")
    return store


def trainer_of(store, raw: dict) -> Trainer:
    trainer = Trainer(Experiment.model_validate(raw))
    start_from(store, trainer)
    return trainer


def test_the_task_draws_from_its_truth_with_a_constant_input_and_linear_rewards():
    task = Categorical(items=4, zipf=1.0, samples=20000, test_samples=10)
    np.testing.assert_allclose(task.truth().numpy(), np.array([1, 1 / 2, 1 / 3, 1 / 4]) / (25 / 12))
    np.testing.assert_allclose(task.rewards().numpy(), 5.0 * np.arange(4) / 3)
    data = task.build(3)
    assert torch.equal(data.inputs, torch.ones(20010, 1))
    assert data.splits["train"].tolist() == list(range(20000)) and data.splits["test"].tolist() == list(range(20000, 20010))
    counts = np.bincount(data.targets[:20000].numpy(), minlength=4) / 20000
    np.testing.assert_allclose(counts, task.truth().numpy(), atol=4 * np.sqrt(0.25 / 20000))
    assert torch.equal(task.build(3).targets, data.targets) and not torch.equal(task.build(4).targets, data.targets)


def test_the_curation_draw_is_the_hand_computation_seed_by_seed():
    rng = np.random.default_rng(0)
    p = softmax(rng.standard_normal((40, 5)) * 2)
    rewards = np.array([0.0, 2.0, -1.0, 0.5, 3.0])
    for seed in (0, 5, 11):
        for generation, k in ((1, 1), (2, 4), (3, 7)):
            drawn = curate_labels(torch.tensor(p), torch.tensor(rewards), k, generator(seed, STREAM, generation))
            assert drawn.tolist() == hand_curation(p, rewards, k, seed, generation).tolist()


def test_the_curated_frequencies_are_the_exact_curated_distribution():
    """With K candidates i.i.d. from p and the Bradley-Terry choice, item i is kept with probability
    Σ over candidate tuples of Π p(c_k) · Σ_{k: c_k = i} exp(r_i) / Σ_j exp(r_{c_j}) (enumerated)."""
    p, rewards, k, n = np.array([0.5, 0.3, 0.2]), np.array([0.0, 1.0, 2.0]), 3, 200_000
    exact = np.zeros(3)
    for tup in itertools.product(range(3), repeat=k):
        weights = np.exp(rewards[list(tup)])
        for c, w in zip(tup, weights):
            exact[c] += np.prod(p[list(tup)]) * w / weights.sum()
    assert exact.sum() == pytest.approx(1) and exact[2] > p[2]  # curation moves mass to the preferred item
    drawn = curate_labels(torch.tensor(np.tile(p, (n, 1))), torch.tensor(rewards), k, generator(0, STREAM, 1))
    np.testing.assert_allclose(np.bincount(drawn.numpy(), minlength=3) / n, exact, atol=4 * np.sqrt(0.25 / n))


def test_a_generation_trains_on_the_hand_curated_labels_of_the_previous_model(store):
    p0 = softmax(logits(store, "gen0"))
    rewards = BETA * np.arange(ITEMS) / (ITEMS - 1)
    for raw, real in ((spec([curate("gen0")]), 0), (spec([curate("gen0", real_fraction=0.5)]), SAMPLES // 2)):
        trainer = trainer_of(store, raw)
        before = trainer.train_y.clone()
        for state in trainer.interventions:
            state.on_start(trainer)
        for k, seed in enumerate(SEEDS):
            hand = hand_curation(np.tile(p0[k], (SAMPLES, 1)), rewards, 3, seed, 1)
            assert trainer.train_y[k, real:].tolist() == hand[real:].tolist()
            assert torch.equal(trainer.train_y[k, :real], before[k, :real])  # the real share keeps its labels
            truth = Categorical(**{key: v for key, v in TASK.items() if key != "name"}).build(seed).targets[:SAMPLES]
            assert trainer.train_y[k, :real].tolist() == truth[:real].tolist()
    # the mixed and curated generations share their draws where both curate
    curated, mixed = trainer_of(store, spec([curate("gen0")])), trainer_of(store, spec([curate("gen0", real_fraction=0.5)]))
    for t in (curated, mixed):
        t.interventions[0].on_start(t)
    assert torch.equal(curated.train_y[:, SAMPLES // 2:], mixed.train_y[:, SAMPLES // 2:])
    # and curation raises the expected reward of the fitted model over gen0's
    reward = store.metrics("curated-1")
    gen0 = store.metrics("gen0")
    for seed in SEEDS:
        after = reward[(reward.seed == seed) & (reward.name == "distribution/reward")].value.iloc[-1]
        first = gen0[(gen0.seed == seed) & (gen0.name == "distribution/reward")].value.iloc[-1]
        assert after > first + 0.3


def test_the_probe_is_the_direct_computation_and_the_fit_is_the_empirical_frequencies(store):
    task = Categorical(**{key: v for key, v in TASK.items() if key != "name"})
    truth, rewards = task.truth().numpy(), task.rewards().numpy()
    metrics = store.metrics("gen0")
    z = logits(store, "gen0")
    for k, seed in enumerate(SEEDS):
        p = softmax(z[k])
        final = {name: metrics[(metrics.seed == seed) & (metrics.name == f"distribution/{name}")].value.iloc[-1]
                 for name in ("entropy", "reward", "kl_to_truth")}
        np.testing.assert_allclose(final["entropy"], -np.sum(p * np.log(p)), rtol=1e-5)
        np.testing.assert_allclose(final["reward"], p @ rewards, rtol=1e-5)
        np.testing.assert_allclose(final["kl_to_truth"], np.sum(truth * np.log(truth / p)), rtol=1e-4, atol=1e-6)
        empirical = np.bincount(task.build(seed).targets[:SAMPLES].numpy(), minlength=ITEMS) / SAMPLES
        np.testing.assert_allclose(p, empirical, atol=2e-3)  # maximum likelihood
    # a distribution on one item: entropy 0, its reward; probabilities 0 add nothing
    one = distribution_measures(torch.tensor([[0.0, 0.0, 200.0]]), torch.tensor([1.0, 2.0, 4.0]),
                                torch.tensor([0.0, 0.0, 1.0]))
    assert one["entropy"].item() == pytest.approx(0, abs=1e-12) and one["reward"].item() == pytest.approx(4)
    assert one["kl_to_truth"].item() == pytest.approx(0, abs=1e-12)
    with pytest.raises(LearnscopeError, match="distribution_measures: rewards has M = 4"):
        distribution_measures(torch.zeros(2, 3), torch.zeros(4), torch.zeros(3))


def test_an_ensemble_curates_as_its_single_runs_do(store):
    raw = spec([curate("gen0", real_fraction=0.5)])
    single, ensemble = trainer_of(store, {**raw, "seeds": [2]}), trainer_of(store, raw)
    for trainer in (single, ensemble):
        trainer.interventions[0].on_start(trainer)
    assert torch.equal(single.train_y[0], ensemble.train_y[2])  # the same labels, exactly
    alone = run_experiment(Experiment.model_validate({**raw, "seeds": [2]}), store)
    tensors, together = read_checkpoint(store, alone.id).tensors, read_checkpoint(store, "mixed-1").tensors
    for name in ("param/head.weight", "param/head.bias"):
        torch.testing.assert_close(tensors[name][0], together[name][2], rtol=1e-4, atol=1e-4)  # float reassociation


def test_a_resumed_generation_trains_on_the_same_labels(store):
    assert_resumes_exactly(lambda: trainer_of(store, spec([curate("curated-1", 2, real_fraction=0.25)], steps=8)))


def test_the_phenomenon_chains_each_generation_to_the_one_before():
    tables = {quick: arm_table(chain_arms(quick), "curated-self-consumption") for quick in (True, False)}
    assert list(tables[True]) == list(tables[False]) and len(tables[True]) == 1 + 2 * ROUNDS
    for table in tables.values():
        assert [r.source for r in table["curated-1"].experiment.runs_read()] == ["@gen0"]
        assert [r.source for r in table[f"mixed-{ROUNDS}"].experiment.runs_read()] == [f"@mixed-{ROUNDS - 1}"]
        assert [r.path for r in table["mixed-2"].experiment.runs_read()] == ["interventions[0].source"]


@pytest.mark.parametrize("change, message", [
    ({"interventions": [curate("nope")]}, "unknown run id 'nope'"),
    ({"interventions": [curate("gen0", candidates=0)]}, "interventions[0].candidates"),
    ({"interventions": [curate("gen0", real_fraction=1.5)]}, "interventions[0].real_fraction"),
    ({"interventions": [{"name": "curate", "source": "gen0"}]}, "interventions[0].generation"),
    ({"interventions": [curate("gen0")], "task": {**TASK, "items": 5}},
     "interventions[0].source: the model of run 'gen0' does not match this model"),
    ({"interventions": [curate("gen0")], "task": {"name": "gaussian-mixture", "classes": ITEMS, "dim": 1},
      "probes": ["loss"]}, "curate keeps candidates by the items' rewards of a 'categorical' task"),
    ({"task": {"name": "gaussian-mixture", "classes": 3, "dim": 2}},
     "distribution reads the items' rewards and ground truth of a 'categorical' task"),
    ({"task": {**TASK, "zipf": -1}}, "task.zipf"),
])
def test_bad_curation_is_refused_in_one_line(tmp_path, capsys, change, message):
    store = Store(tmp_path / "store")
    run_experiment(Experiment.model_validate(spec(steps=2)), store, run_id="gen0")
    path = tmp_path / "spec.json"
    path.write_text(json.dumps({**spec(), **change}))
    code, out, err = cli(capsys, "run", path, "--store", tmp_path / "store")
    assert code == 2, (out, err)
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
