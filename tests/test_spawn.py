"""Spawning and the pair probes: the copy and its perturbation against a
hand computation, an exact copy following its first member exactly, the
distance, barrier and CKA against direct computations, ensembles against
single runs, exact resume and one-line bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from helpers import assert_resumes_exactly, cli
from learnscope.errors import SpecError
from learnscope.probes.base import ProbeContext
from learnscope.runner import run_experiment
from learnscope.seeding import generator
from learnscope.spec import Experiment
from learnscope.store.sqlite import Store
from learnscope.train.trainer import Trainer

TASK = {"name": "gaussian-mixture", "classes": 3, "dim": 6, "samples": 64, "test_samples": 24}
PROBES = [{"name": "pair_distance"}, {"name": "pair_barrier", "split": "train", "points": 5},
          {"name": "pair_cka", "site": "hidden.0", "split": "test"}]


def spec(at=0, scale=1e-3, seeds=(0, 1, 2, 3), steps=6, optimizer="adam") -> dict:
    return {"task": TASK, "model": {"name": "mlp", "hidden": [10]},
            "recipe": {"optimizer": optimizer, "lr": 1e-2, "batch_size": 8, "steps": steps, "probe_every": 2,
                       "probe_log_points": 0},
            "interventions": [{"name": "spawn", "at": at, "scale": scale}], "probes": PROBES, "seeds": list(seeds)}


def trainer(**fields) -> Trainer:
    return Trainer(Experiment.model_validate(spec(**fields)))


def test_a_copy_is_its_first_member_perturbed_by_the_stated_noise():
    t = trainer(at=3, scale=0.5, steps=6)
    fresh = [p.detach().clone() for p in t.params]  # each seed's own initialization
    for state in t.interventions:
        state.on_start(t)
    for _ in range(2):
        t.train_step()
    assert all(not torch.equal(p[1], p[0]) for p in t.params)  # before update 3, its own initialization
    t.train_step()  # update 3: the copy is made after it
    names = [n for n, _ in t.model.named_parameters()]
    for name, p, p0 in zip(names, t.params, fresh):
        for first, second in ((0, 1), (2, 3)):
            sigma = p0[first].double().std(correction=0).item()
            noise = torch.randn(p.shape[1:], generator=generator(t.seeds[second], "perturb-init", "spawn/spawn", name))
            torch.testing.assert_close(p[second], p[first] + 0.5 * sigma * noise, rtol=1e-6, atol=1e-7)
    for p in t.params:  # Adam's moments go with the parameters
        for value in t.optimizer.state[p].values():
            if value.dim():
                assert torch.equal(value[1], value[0]) and torch.equal(value[3], value[2])


def test_an_exact_copy_follows_its_first_member_on_the_same_batches(tmp_path):
    run = run_experiment(Experiment.model_validate(spec(at=0, scale=0.0, steps=8)), Store(tmp_path / "s"))
    distance = run.metrics[run.metrics.name == "pair_distance"]
    assert (distance.value == 0).all() and len(distance) == 4 * 5
    t = trainer(at=0, scale=0.0)
    for state in t.interventions:
        state.on_start(t)
    for split, (x, y) in t.data.splits.items():
        assert torch.equal(x[1], x[0]) and torch.equal(y[3], y[2]), split


def test_the_pair_probes_against_direct_computations():
    t = trainer(at=None, steps=4)
    for state in t.interventions:
        state.on_start(t)
    for _ in range(4):
        t.train_step()
    ctx = ProbeContext(t, t.step, t.probe_needs)
    got = {}
    for probe in t.experiment.probes:
        got.update(probe.measure(ctx))
    params = [p.detach().double() for p in t.params]
    for first in (0, 2):
        second = first + 1
        distance = np.sqrt(sum(((p[second] - p[first]) ** 2).sum().item() for p in params))
        assert got["pair_distance"][first].item() == pytest.approx(distance) == got["pair_distance"][second].item()
        # the barrier: one-seed copies of the model along the line, the loss by F.cross_entropy
        x, y = t.data.splits["train"]
        single = Trainer(Experiment.model_validate({**spec(at=None, seeds=[t.seeds[first]]), "interventions": []}))
        losses = []
        for alpha in np.linspace(0, 1, 5):
            with torch.no_grad():
                for q, p in zip(single.params, t.params):
                    q.copy_(((1 - alpha) * p[first] + alpha * p[second]).unsqueeze(0))
                losses.append(F.cross_entropy(single.model(x[first : first + 1])[0], y[first]).item())
        chord = [(1 - a) * losses[0] + a * losses[-1] for a in np.linspace(0, 1, 5)]
        barrier = max(loss - c for loss, c in zip(losses, chord))
        assert got["pair_barrier/train"][first].item() == pytest.approx(barrier, rel=1e-4, abs=1e-6)
        # CKA in feature space (Kornblith et al.): ‖YᵀX‖²_F / (‖XᵀX‖_F ‖YᵀY‖_F), columns centred
        feats = ctx.features("test", "hidden.0", 24)[0].double()
        a, b = feats[first].numpy(), feats[second].numpy()
        a, b = a - a.mean(0), b - b.mean(0)
        cka = np.linalg.norm(b.T @ a) ** 2 / (np.linalg.norm(a.T @ a) * np.linalg.norm(b.T @ b))
        assert got["pair_cka/hidden.0/test"][first].item() == pytest.approx(cka, rel=1e-8)
    # the barrier's probe leaves the parameters as they were
    assert all(torch.equal(p.detach().double(), q) for p, q in zip(t.params, params))


def test_a_pair_of_an_ensemble_is_the_pair_run_alone(tmp_path):
    store = Store(tmp_path / "s")
    ensemble = run_experiment(Experiment.model_validate(spec(at=2, scale=1e-2)), store).metrics
    alone = run_experiment(Experiment.model_validate(spec(at=2, scale=1e-2, seeds=[2, 3])), store).metrics
    a = ensemble[ensemble.seed.isin([2, 3])].sort_values(["seed", "step", "name"]).value.to_numpy()
    b = alone.sort_values(["seed", "step", "name"]).value.to_numpy()
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("at, cut", [(0, 3), (4, 2), (4, 6)])
def test_a_resumed_spawn_continues_exactly(at, cut):
    raw = Experiment.model_validate(spec(at=at, scale=1e-2, steps=9, optimizer="sgd"))
    assert_resumes_exactly(lambda: Trainer(raw), cut)


@pytest.mark.parametrize("change, message", [
    ({"seeds": [0, 1, 2]}, "spawn pairs the seeds in order, (0, 1), (2, 3), ...; 3 seeds leave one without a partner"),
    ({"at": 6}, "interventions[0].at: update 6 is past the run's last, 5"),
    ({"scale": -1}, "interventions[0].scale"),
])
def test_bad_spawns_are_refused_in_one_line(tmp_path, capsys, change, message):
    raw = spec()
    seeds = change.pop("seeds", None)
    raw["interventions"][0].update(change)
    if seeds is not None:
        raw["seeds"] = seeds
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(raw))
    code, out, err = cli(capsys, "run", path, "--store", tmp_path / "store")
    assert code == 2, (out, err)
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def test_pair_probes_refuse_an_odd_ensemble():
    t = Trainer(Experiment.model_validate({**spec(seeds=[0, 1, 2]), "interventions": []}))
    with pytest.raises(Exception, match="pair_distance measures pairs of seeds"):
        t.measure()
    with pytest.raises(SpecError, match="unknown site"):
        Trainer(Experiment.model_validate({**spec(), "probes": [{"name": "pair_cka", "site": "nowhere"}]}))
