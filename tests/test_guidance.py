"""Representational guidance: linear CKA against a direct computation, the
layer mapping against the source's rule, the added loss against a hand
computation from the guide's own run, ensembles against single runs,
exact resume and one-line bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from helpers import assert_resumes_exactly, cli
from learnscope.interventions.guidance import guided_pairs
from learnscope.models.base import Sites
from learnscope.probes.pairs import linear_cka
from learnscope.runner import run_experiment, start_from
from learnscope.spec import Experiment
from learnscope.store.checkpoints import read_checkpoint
from learnscope.store.sqlite import Store
from learnscope.train.trainer import Trainer

TASK = {"name": "gaussian-mixture", "classes": 3, "dim": 6, "samples": 96, "test_samples": 32}
GUIDE_MODEL = {"name": "mlp", "hidden": [16, 16]}
TARGET_SITES = ["hidden.0", "hidden.1", "hidden.2"]


def spec(model=None, interventions=(), seeds=(0, 1, 2), steps=6) -> dict:
    return {"task": TASK, "model": model or {"name": "mlp", "hidden": [8, 8, 8], "activation": "tanh"},
            "recipe": {"optimizer": "sgd", "lr": 0.1, "batch_size": 16, "steps": steps, "probe_every": 3,
                       "probe_log_points": 0},
            "interventions": list(interventions), "probes": [{"name": "accuracy", "splits": ["test"]}],
            "seeds": list(seeds)}


def guided(**fields) -> dict:
    return {"name": "guidance", "guide": "guide", "sites": TARGET_SITES, "guide_sites": ["hidden.0", "hidden.1"],
            **fields}


@pytest.fixture
def store(tmp_path):
    store = Store(tmp_path / "store")
    run_experiment(Experiment.model_validate(spec(GUIDE_MODEL, steps=20)), store, run_id="guide")
    return store


def loaded(store, raw: dict) -> Trainer:
    trainer = Trainer(Experiment.model_validate(raw))
    start_from(store, trainer)
    return trainer


def numpy_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Kornblith et al.'s linear CKA: ‖YᵀX‖²_F / (‖XᵀX‖_F ‖YᵀY‖_F) of column-centred features."""
    x, y = x - x.mean(0), y - y.mean(0)
    return np.linalg.norm(y.T @ x) ** 2 / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y))


def test_linear_cka_against_the_feature_space_formula():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 30, 5, generator=gen, dtype=torch.float64)
    y = torch.randn(2, 30, 3, 2, generator=gen, dtype=torch.float64)
    got = linear_cka(x, y)
    for s in range(2):
        assert got[s].item() == pytest.approx(numpy_cka(x[s].numpy(), y[s].reshape(30, -1).numpy()), rel=1e-10)
    rotation = torch.linalg.qr(torch.randn(5, 5, generator=gen, dtype=torch.float64))[0]
    torch.testing.assert_close(linear_cka(x, 3.0 * x @ rotation + 1.0), torch.ones(2, dtype=torch.float64))
    constant = torch.ones(2, 30, 4, dtype=torch.float64)
    assert torch.equal(linear_cka(constant, x), torch.zeros(2, dtype=torch.float64))  # no structure: 0, not NaN


def test_guide_layers_map_onto_target_layers_as_the_source_maps_them():
    assert guided_pairs([f"t{i}" for i in range(32)], ["g0", "g1", "g2", "g3"]) == [
        ("t0", "g0"), ("t10", "g1"), ("t21", "g2"), ("t31", "g3")]
    assert guided_pairs(["t0", "t1"], ["g0"]) == [("t0", "g0")]
    assert guided_pairs(["t0", "t1", "t2"], ["g0", "g1", "g2"]) == [("t0", "g0"), ("t1", "g1"), ("t2", "g2")]


def test_the_added_loss_against_the_guide_runs_own_activations(store):
    target = loaded(store, spec(interventions=[guided(weight=0.5)]))
    guide = Trainer(Experiment.model_validate(spec(GUIDE_MODEL, steps=20)))
    checkpoint = read_checkpoint(store, "guide")
    guide.load_state(checkpoint.tensors, checkpoint.meta)
    x, y = target.batch()
    state = target.interventions[0]
    mine = Sites(read=TARGET_SITES, edits=state.site_edits(target, 0, slice(0, 3), slice(0, x.shape[1])))
    outputs = target.model(x, mine)
    got = state.loss(target, x, outputs, y, slice(0, 3))
    theirs = Sites(read=["hidden.0", "hidden.1"])
    with torch.no_grad():
        guide.model(x, theirs)
    expected = 0.5 * ((1 - linear_cka(mine.acts["hidden.0"], theirs.acts["hidden.0"]))
                      + (1 - linear_cka(mine.acts["hidden.2"], theirs.acts["hidden.1"])))
    torch.testing.assert_close(got, expected)
    got.sum().backward()  # the alignment's gradient reaches the target's first layer
    assert target.model.hidden[0].weight.grad.abs().sum() > 0


def test_guidance_raises_the_alignment_and_probes_see_the_plain_model(store):
    plain = loaded(store, spec(steps=30))
    target = loaded(store, spec(interventions=[guided(weight=3.0)], steps=30))
    plain.run()
    target.run()
    x, _ = target.data.splits["test"]
    guide = target.interventions[0]
    theirs = Sites(read=["hidden.1"])
    with torch.no_grad():
        guide.guide(x, theirs)
    cka = []
    for trainer in (plain, target):
        mine = Sites(read=["hidden.2"])
        with torch.no_grad():
            trainer.model.eval()(x, mine)
        cka.append(linear_cka(mine.acts["hidden.2"], theirs.acts["hidden.1"]))
    assert (cka[1] > cka[0]).all()
    # a probe's pass (eval mode) captures nothing: the edits are the training passes'
    assert target.interventions[0].site_edits(target, 30, slice(0, 3), slice(0, 4)) == {}


def test_an_ensemble_is_guided_as_its_single_runs_are(store):
    ensemble = run_experiment(Experiment.model_validate(spec(interventions=[guided()])), store)
    alone = run_experiment(Experiment.model_validate(spec(interventions=[guided()], seeds=[1])), store)
    a, b = ensemble.metrics, alone.metrics
    np.testing.assert_allclose(a[a.seed == 1].sort_values(["step", "name"]).value.to_numpy(),
                               b.sort_values(["step", "name"]).value.to_numpy(), rtol=1e-5, atol=1e-6)


def test_a_resumed_guided_run_continues_exactly(store):
    raw = spec(interventions=[guided()], steps=8)
    assert_resumes_exactly(lambda: loaded(store, raw))


@pytest.mark.parametrize("fields, message", [
    ({"sites": ["hidden.0", "hidden.9"]}, "interventions[0].sites: unknown site 'hidden.9'"),
    ({"guide_sites": ["hidden.0", "hidden.5"]}, "interventions[0].guide_sites: unknown site 'hidden.5'"),
    ({"sites": ["hidden.0"]}, "interventions[0]: 2 guide_sites for 1 sites: each guide site guides its own target site"),
    ({"guide": "nope"}, "unknown run id 'nope'"),
    ({"weight": 0}, "interventions[0].weight"),
])
def test_bad_guidance_is_refused_in_one_line(store, tmp_path, capsys, fields, message):
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec(interventions=[guided(**fields)])))
    code, out, err = cli(capsys, "run", path, "--store", tmp_path / "store")
    assert code == 2, (out, err)
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
