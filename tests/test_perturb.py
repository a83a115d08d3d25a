"""perturb-init: the starting parameters plus noise scaled by each tensor's
initialization spread, against a hand computation from the runs' own
checkpoints; ensembles against single runs; the stream; a tensor
initialized to a constant left as it is; the reference it sets; exact
resume; bad input in one line."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from helpers import assert_resumes_exactly, cli
from learnscope.runner import run_experiment, start_from
from learnscope.seeding import generator
from learnscope.spec import Experiment
from learnscope.store.checkpoints import read_checkpoint
from learnscope.store.sqlite import Store
from learnscope.train.trainer import Trainer

TASK = {"name": "gaussian-mixture", "classes": 3, "dim": 40, "samples": 64, "test_samples": 16}


def spec(scale=0.5, seeds=(0, 1, 2), steps=0, init_from="source", **fields) -> dict:
    return {"task": TASK, "model": {"name": "mlp", "hidden": [30]},
            "recipe": {"optimizer": "adam", "lr": 1e-2, "batch_size": 16, "steps": steps, "probe_every": 2,
                       "probe_log_points": 0},
            "interventions": [{"name": "perturb-init", "scale": scale, **fields}],
            "probes": ["relative_weight_change"], "seeds": list(seeds), "init_from": init_from}


@pytest.fixture
def store(tmp_path):
    store = Store(tmp_path / "store")
    source = {**spec(), "interventions": [], "init_from": None, "init_stream": "source"}  # 0 updates: its init
    run_experiment(Experiment.model_validate(source), store, run_id="source")
    return store


def params(store, run_id) -> dict[str, np.ndarray]:
    checkpoint = read_checkpoint(store, run_id)
    return {k.removeprefix("param/"): v.double().numpy() for k, v in checkpoint.tensors.items() if k.startswith("param/")}


def loaded(store, raw: dict) -> Trainer:
    trainer = Trainer(Experiment.model_validate(raw))
    start_from(store, trainer)
    return trainer


def test_the_perturbation_against_a_hand_computation(store):
    run = run_experiment(Experiment.model_validate(spec(scale=0.5)), store)
    got, source = params(store, run.id), params(store, "source")
    # the spread: each seed's own initialization of the tensor, as this run's model (no init_stream) draws it
    fresh = Trainer(Experiment.model_validate({**spec(), "init_from": None, "interventions": []}))
    for name, p in fresh.model.named_parameters():
        for s, seed in enumerate((0, 1, 2)):
            sigma = p[s].detach().double().numpy().std()
            xi = torch.randn(p.shape[1:], generator=generator(seed, "perturb-init", "perturb", name)).double().numpy()
            np.testing.assert_allclose(got[name][s], source[name][s] + 0.5 * sigma * xi, rtol=1e-6, atol=1e-7)
    # PyTorch's default init is uniform in ±1/sqrt(fan_in): the spread is 1/sqrt(3 fan_in), and the
    # perturbation of the 40 x 30 first layer, in those units, has mean 0 and std 0.5
    delta = (got["hidden.0.weight"] - source["hidden.0.weight"]) / (1 / math.sqrt(3 * 40))
    assert abs(delta.mean()) < 0.03 and delta.std() == pytest.approx(0.5, rel=0.05)
    # the run starts there: its reference is the perturbed start, which it has not moved from
    assert (run.metrics.query("name == 'relative_weight_change'").value == 0).all()


def test_an_ensemble_is_perturbed_as_its_single_runs():
    ensemble = Trainer(Experiment.model_validate(spec(init_from=None)))
    alone = Trainer(Experiment.model_validate(spec(init_from=None, seeds=[2])))
    for trainer in (ensemble, alone):
        trainer.interventions[0].on_start(trainer)
    for p, q, p0, q0 in zip(ensemble.params, alone.params, ensemble.initial_params, alone.initial_params):
        torch.testing.assert_close(p[2:], q, rtol=0, atol=0)
        torch.testing.assert_close(p0[2:], q0, rtol=0, atol=0)


def test_the_stream_names_the_draw_and_scale_zero_is_the_copy(store):
    runs = {key: run_experiment(Experiment.model_validate(raw), store).id for key, raw in {
        "a": spec(), "a again": spec(), "b": spec(stream="other"), "none": spec(scale=0.0)}.items()}
    got = {key: params(store, run_id) for key, run_id in runs.items()}
    source = params(store, "source")
    for name in source:
        np.testing.assert_array_equal(got["a"][name], got["a again"][name])
        assert not np.allclose(got["a"][name], got["b"][name])
        np.testing.assert_array_equal(got["none"][name], source[name])


def test_a_tensor_initialized_to_a_constant_is_left_as_it_is():
    raw = {"task": {"name": "modular-arithmetic", "p": 11}, "seeds": [0, 1], "init_from": None,
           "model": {"name": "transformer", "d_model": 16, "heads": 2, "d_mlp": 16},
           "interventions": [{"name": "perturb-init", "scale": 1.0}]}
    trainer = Trainer(Experiment.model_validate(raw))
    before = {name: p.detach().clone() for name, p in trainer.model.named_parameters()}
    trainer.interventions[0].on_start(trainer)
    norms = [name for name in before if "ln" in name]
    assert norms, list(before)
    for name, p in trainer.model.named_parameters():
        if name in norms:  # LayerNorm gains start at 1 and biases at 0: no spread
            assert torch.equal(p, before[name]), name
        else:
            assert not torch.equal(p, before[name]), name


def test_a_resumed_run_continues_exactly_and_keeps_its_reference(store):
    raw = spec(scale=0.3, steps=8)
    assert_resumes_exactly(lambda: loaded(store, raw))
    first = loaded(store, raw)
    first.run()
    resumed = loaded(store, raw)
    resumed.load_state(*first.state())
    resumed.interventions[0].on_start(resumed)  # as run() begins, at step 8
    for p0, q0, p, q in zip(first.initial_params, resumed.initial_params, first.params, resumed.params):
        torch.testing.assert_close(p0, q0, rtol=0, atol=0)  # the perturbed start, drawn again
        torch.testing.assert_close(p, q, rtol=0, atol=0)  # the checkpoint's parameters, untouched
    # on_start twice on one trainer perturbs once
    again = loaded(store, spec(scale=0.3))
    again.interventions[0].on_start(again)
    once = [p.detach().clone() for p in again.params]
    again.interventions[0].on_start(again)
    assert all(torch.equal(p, q) for p, q in zip(once, again.params))


@pytest.mark.parametrize("change, message", [
    ({"scale": -1.0}, "interventions[0].scale"),
    ({"stream": ""}, "interventions[0].stream"),
    ({"sigma": 1.0}, "interventions[0]"),
])
def test_bad_input_is_refused_in_one_line(tmp_path, capsys, change, message):
    raw = spec(init_from=None)
    raw["interventions"] = [{**raw["interventions"][0], **change}]
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(raw))
    code, out, err = cli(capsys, "run", path, "--store", tmp_path / "store")
    assert code == 2, (out, err)
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
