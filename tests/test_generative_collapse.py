"""generative-collapse: curate's mode accumulate (the real draws, then one
block of samples per earlier generation), categorical's copies, and the
phenomenon's chains."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from helpers import assert_resumes_exactly, cli
from learnscope.catalog.base import arm_table
from learnscope.catalog.generative_collapse import ROUNDS, collapse_arms
from learnscope.interventions.curate import STREAM
from learnscope.runner import run_experiment, start_from
from learnscope.seeding import generator
from learnscope.spec import Experiment
from learnscope.store.checkpoints import read_checkpoint
from learnscope.store.sqlite import Store
from learnscope.tasks.categorical import Categorical
from learnscope.train.trainer import Trainer

ITEMS, SAMPLES, SEEDS = 6, 40, [0, 1, 2]
TASK = {"name": "categorical", "items": ITEMS, "zipf": 1.0, "samples": SAMPLES, "test_samples": 30}


def spec(interventions=(), copies=1, seeds=SEEDS, steps=100) -> dict:
    return {"task": {**TASK, "copies": copies}, "model": {"name": "mlp", "hidden": []},
            "recipe": {"optimizer": "adam", "lr": 0.1, "steps": steps, "probe_every": steps, "probe_log_points": 0},
            "interventions": list(interventions), "probes": ["distribution"], "seeds": list(seeds)}


def sample(source: str, generation: int, earlier=None) -> dict:
    step = {"name": "curate", "source": source, "candidates": 1, "generation": generation}
    return step if earlier is None else {**step, "mode": "accumulate", "earlier": earlier}


def probabilities(store, run_id: str) -> np.ndarray:
    """[S, M]: each seed's distribution, from the run's last checkpoint."""
    t = read_checkpoint(store, run_id).tensors
    z = (t["param/head.weight"][:, 0, :] + t["param/head.bias"].reshape(len(SEEDS), -1)).double().numpy()
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def hand_sample(p: np.ndarray, seed: int, generation: int, n: int = SAMPLES) -> list[int]:
    """n plain draws from p [M] in numpy: one uniform per example by inverse CDF (then curate's choice uniform,
    drawn and unused with one candidate)."""
    gen = generator(seed, STREAM, generation)
    u = torch.rand(n, 1, generator=gen, dtype=torch.float64).numpy()[:, 0]
    cdf = np.cumsum(p)
    return [min(int(np.sum(cdf <= x)), len(p) - 1) for x in u]


@pytest.fixture
def store(tmp_path):
    store = Store(tmp_path / "store")
    run_experiment(Experiment.model_validate(spec()), store, run_id="gen0")
    run_experiment(Experiment.model_validate(spec([sample("gen0", 1, [])], copies=2)), store, run_id="accumulate-1")
    return store


def trainer_of(store, raw: dict) -> Trainer:
    trainer = Trainer(Experiment.model_validate(raw))
    start_from(store, trainer)
    return trainer


def started(store, raw: dict) -> Trainer:
    trainer = trainer_of(store, raw)
    for state in trainer.interventions:
        state.on_start(trainer)
    return trainer


def test_copies_repeat_the_same_real_draws():
    one, three = Categorical(items=5, samples=7, test_samples=4), Categorical(items=5, samples=7, test_samples=4, copies=3)
    a, b = one.build(2), three.build(2)
    assert torch.equal(a.targets, b.targets) and torch.equal(a.splits["test"], b.splits["test"])
    assert b.splits["train"].tolist() == list(range(7)) * 3


def test_accumulate_trains_on_the_real_draws_then_each_generations_hand_samples(store):
    acc2 = spec([sample("accumulate-1", 2, ["gen0"])], copies=3)
    trainer = started(store, acc2)
    p0, p1 = probabilities(store, "gen0"), probabilities(store, "accumulate-1")
    for k, seed in enumerate(SEEDS):
        y = trainer.train_y[k].tolist()
        real = Categorical(**{key: v for key, v in TASK.items() if key != "name"}).build(seed).targets[:SAMPLES]
        assert y[:SAMPLES] == real.tolist()
        assert y[SAMPLES:2 * SAMPLES] == hand_sample(p0[k], seed, 1)
        assert y[2 * SAMPLES:] == hand_sample(p1[k], seed, 2)
    # block 1 is exactly the sample generation 1 drew, and replace's generation 1 draws it too
    acc1, rep1 = started(store, spec([sample("gen0", 1, [])], copies=2)), started(store, spec([sample("gen0", 1)]))
    assert torch.equal(acc1.train_y, trainer.train_y[:, :2 * SAMPLES])
    assert torch.equal(rep1.train_y, trainer.train_y[:, SAMPLES:2 * SAMPLES])
    # the fit is the pooled empirical frequencies (maximum likelihood on (g + 1) N examples)
    counts = np.stack([np.bincount(acc1.train_y[k].numpy(), minlength=ITEMS) for k in range(len(SEEDS))])
    np.testing.assert_allclose(probabilities(store, "accumulate-1"), counts / (2 * SAMPLES), atol=5e-3)


def test_an_ensemble_accumulates_as_its_single_runs_do(store):
    raw = spec([sample("accumulate-1", 2, ["gen0"])], copies=3)
    single, ensemble = started(store, {**raw, "seeds": [2]}), started(store, raw)
    assert torch.equal(single.train_y[0], ensemble.train_y[2])


def test_a_resumed_accumulating_generation_trains_on_the_same_labels(store):
    assert_resumes_exactly(lambda: trainer_of(store, spec([sample("accumulate-1", 2, ["gen0"])], copies=3, steps=8)))


def test_the_phenomenon_chains_replace_and_accumulate():
    tables = {quick: arm_table(collapse_arms(quick), "generative-collapse") for quick in (True, False)}
    assert list(tables[True]) == list(tables[False]) and len(tables[True]) == 1 + 2 * ROUNDS
    for table in tables.values():
        assert [r.source for r in table[f"replace-{ROUNDS}"].experiment.runs_read()] == [f"@replace-{ROUNDS - 1}"]
        last = table[f"accumulate-{ROUNDS}"].experiment
        assert [r.source for r in last.runs_read()] == [f"@accumulate-{ROUNDS - 1}", "@gen0"] + [
            f"@accumulate-{j}" for j in range(1, ROUNDS - 1)]
        assert last.task.copies == ROUNDS + 1  # type: ignore[attr-defined]


@pytest.mark.parametrize("change, message", [
    ({"interventions": [sample("gen0", 2, [])], "task": {**TASK, "copies": 3}},
     "generation 2 needs 1 runs in `earlier`, not 0"),
    ({"interventions": [sample("gen0", 1, [])]}, "categorical's copies: 2); it has 1"),
    ({"interventions": [{**sample("gen0", 1, []), "real_fraction": 0.5}], "task": {**TASK, "copies": 2}},
     "real_fraction is mode replace's"),
    ({"interventions": [{**sample("gen0", 2), "earlier": ["gen0"]}]}, "`earlier` is accumulate's"),
    ({"interventions": [sample("gen0", 2, ["nope"])], "task": {**TASK, "copies": 3}}, "unknown run id 'nope'"),
])
def test_bad_accumulation_is_refused_in_one_line(tmp_path, capsys, change, message):
    store = Store(tmp_path / "store")
    run_experiment(Experiment.model_validate(spec(steps=2)), store, run_id="gen0")
    path = tmp_path / "spec.json"
    path.write_text(json.dumps({**spec(), **change}))
    code, out, err = cli(capsys, "run", path, "--store", tmp_path / "store")
    assert code == 2, (out, err)
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
