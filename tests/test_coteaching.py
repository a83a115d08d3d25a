"""Co-teaching (interventions/coteaching.py): an update against a hand
computation, the shared data, the schedule against the source's, a pair in
an ensemble against its own run, exact resume and bad input."""

from __future__ import annotations

import json

import numpy as np
import torch
import torch.nn.functional as F

from helpers import assert_resumes_exactly, cli
from learnscope.interventions.coteaching import CoTeaching
from learnscope.spec import Experiment
from learnscope.train.trainer import Trainer

TASK = {"name": "gaussian-mixture", "classes": 3, "dim": 6, "samples": 64, "test_samples": 16, "label_noise": 0.25}


def experiment(seeds=(0, 1), steps: int = 6, **co) -> Experiment:
    return Experiment.model_validate({
        "task": TASK, "model": {"name": "mlp", "hidden": [12]}, "seeds": list(seeds),
        "probes": [{"name": "accuracy", "splits": ["test"]}],
        "interventions": [{"name": "co-teaching", "forget_rate": 0.25, **co}],
        "recipe": {"optimizer": "sgd", "lr": 0.3, "steps": steps, "probe_every": steps, "probe_log_points": 0,
                   "batch_size": 16}})


def started(spec: Experiment) -> Trainer:
    trainer = Trainer(spec)
    trainer.interventions[0].on_start(trainer)
    return trainer


def test_the_schedule_is_the_sources():
    spec = CoTeaching(forget_rate=0.4, warmup=10)
    source = np.ones(30) * 0.4
    source[:10] = np.linspace(0, 0.4, 10)  # Han et al.'s rate_schedule, exponent 1
    np.testing.assert_allclose([spec.rate(t) for t in range(30)], source, atol=1e-15)


def test_each_peer_learns_from_the_examples_its_partner_fits_best():
    trainer = started(experiment())
    x, y = trainer.batch()
    x, y = x[0], y[0]  # the pair's batch: the first peer's
    names = [n for n, _ in trainer.model.named_parameters()]
    losses, params = [], []
    for member in range(2):
        p = [q[member : member + 1].detach().clone().requires_grad_(True) for q in trainer.params]
        out = torch.func.functional_call(trainer.model, dict(zip(names, p)), (x.unsqueeze(0),))[0]
        losses.append(F.cross_entropy(out, y, reduction="none"))
        params.append(p)
    kept = int(0.75 * len(y))
    chosen = [torch.argsort(loss.detach(), stable=True)[:kept] for loss in losses]
    expected = []
    for member in range(2):
        grads = torch.autograd.grad(losses[member][chosen[1 - member]].mean(), params[member])
        expected.append([q[member] - 0.3 * g[0] for q, g in zip(trainer.params, grads)])
    trainer.train_step()
    for member in range(2):
        for got, want in zip(trainer.params, expected[member]):
            torch.testing.assert_close(got[member], want)


def test_the_peers_share_the_first_peers_data():
    trainer = started(experiment(seeds=(0, 1, 2, 3)))
    alone = Trainer(experiment(seeds=(0, 2)))
    for split, (x, y) in trainer.data.splits.items():
        ax, ay = alone.data.splits[split]
        torch.testing.assert_close(x[0::2], ax, rtol=0, atol=0)
        torch.testing.assert_close(x[1::2], ax, rtol=0, atol=0)
        assert torch.equal(y[0::2], ay) and torch.equal(y[1::2], ay)


def test_a_pair_in_an_ensemble_trains_as_its_own_run():
    together, alone = Trainer(experiment(seeds=(0, 1, 2, 3), warmup=4)), Trainer(experiment(seeds=(2, 3), warmup=4))
    together.run(), alone.run()
    for p, q in zip(together.params, alone.params):
        torch.testing.assert_close(p[2:4], q)


def test_a_resumed_run_continues_exactly():
    assert_resumes_exactly(lambda: Trainer(experiment(steps=8, warmup=5)))


def test_an_odd_number_of_seeds_is_one_line(tmp_path, capsys):
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(experiment(seeds=(0, 1, 2)).to_dict()))
    code, _, err = cli(capsys, "run", path, "--store", tmp_path / "store")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "co-teaching pairs the seeds in order" in err and "3 seeds leave one without a partner" in err
