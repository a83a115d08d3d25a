"""The worst-case forget set search (interventions/forget_search.py): its
projection against scipy, the whole search against a hand computation on a
plain per-seed network, ensembles against single runs, the rewritten splits,
the oracle's restart, exact resume and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import brentq, minimize

from helpers import assert_resumes_exactly
from learnscope.errors import SpecError
from learnscope.interventions.forget_search import capped_simplex_projection
from learnscope.spec import Experiment
from learnscope.train.trainer import Trainer

TASK = {"name": "forget-set", "kind": "random", "fraction": 0.25,
        "base": {"name": "gaussian-mixture", "classes": 3, "dim": 5, "samples": 48, "test_samples": 24,
                 "separation": 1.5}}
SEARCH = {"name": "worst-case-forget-set", "rounds": 3, "inner_steps": 4, "inner_lr": 0.01, "weight_lr": 0.5}


def experiment(seeds=(0, 1), steps: int = 30, interventions=(), train_split: str = "train", **recipe) -> Experiment:
    return Experiment.model_validate({
        "task": TASK, "model": {"name": "mlp", "hidden": [16]}, "seeds": list(seeds),
        "probes": [{"name": "accuracy", "splits": ["forget", "retain"]}],
        "interventions": list(interventions),
        "recipe": {"optimizer": "adam", "lr": 0.02, "steps": steps, "probe_every": steps, "probe_log_points": 0,
                   "train_split": train_split, **recipe}})


def trained(seeds=(0, 1)) -> Trainer:
    original = Trainer(experiment(seeds))
    original.run()
    return original


def searching(original: Trainer, search=SEARCH, seeds=(0, 1), **recipe) -> Trainer:
    """A trainer that runs the search, started from `original` as init_from would."""
    trainer = Trainer(experiment(seeds, interventions=[search], **recipe))
    tensors, meta = original.state()
    trainer.initialize_from(tensors, meta["seeds"], "original")
    return trainer


# ---------------------------------------------------------------- the projection


def projection_by_root(a: np.ndarray, k: float) -> np.ndarray:
    """clip(a − μ, 0, 1) with μ the root of Σ clip(a − μ, 0, 1) = k (scipy's brentq)."""
    mu = brentq(lambda m: np.clip(a - m, 0, 1).sum() - k, a.min() - 1, a.max(), xtol=1e-14)
    return np.clip(a - mu, 0, 1)


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(st.lists(st.floats(-3, 3), min_size=3, max_size=12), st.floats(0.05, 0.95))
def test_the_projection_is_the_nearest_point_of_the_capped_simplex(values, share):
    a = np.array(values)
    k = share * len(a)
    w = capped_simplex_projection(torch.from_numpy(a[None]), k)[0].numpy()
    assert abs(w.sum() - k) < 1e-9 and w.min() >= 0 and w.max() <= 1
    np.testing.assert_allclose(w, projection_by_root(a, k), atol=1e-9)


def test_the_projection_solves_the_quadratic_program():
    a = np.random.default_rng(3).normal(size=8)
    k = 3.0
    qp = minimize(lambda w: ((w - a) ** 2).sum(), np.full(8, k / 8), jac=lambda w: 2 * (w - a), method="SLSQP",
                  bounds=[(0, 1)] * 8, constraints=[{"type": "eq", "fun": lambda w: w.sum() - k}],
                  options={"ftol": 1e-14, "maxiter": 500})
    np.testing.assert_allclose(capped_simplex_projection(torch.from_numpy(a[None]), k)[0].numpy(), qp.x, atol=1e-6)


# ---------------------------------------------------------------- the search


def reference_search(original: Trainer, member: int, search=SEARCH) -> list[int]:
    """The search for one seed, written out on the seed's own weights as a
    plain network: relu(x W1 + b1) W2 + b2, signSGD on the (1 − w)-weighted
    summed cross-entropy, the projection by brentq."""
    x, y = (t[member] for t in original.data.splits["train"])
    x = x.flatten(1)
    n, k = len(y), original.data.size("forget")
    weights = [p[member].detach() for p in original.params]  # hidden.0 weight, bias; head weight, bias

    def losses(p):
        return F.cross_entropy(torch.relu(x @ p[0] + p[1]) @ p[2] + p[3], y, reduction="none")

    w = np.full(n, k / n)
    for _ in range(search["rounds"]):
        p = [t.clone().requires_grad_(True) for t in weights]
        for _ in range(search["inner_steps"]):
            grads = torch.autograd.grad((torch.tensor(1 - w, dtype=torch.float32) * losses(p)).sum(), p)
            p = [(t - search["inner_lr"] * g.sign()).detach().requires_grad_(True) for t, g in zip(p, grads)]
        with torch.no_grad():
            fitted = losses(p).double().numpy()
        w = projection_by_root(w - search["weight_lr"] * (fitted + 2 * search.get("gamma", 0.0) * w), k)
    return sorted(np.argsort(-w, kind="stable")[:k].tolist())


def test_the_search_matches_a_hand_computation_for_each_seed():
    original = trained()
    trainer = searching(original)
    chosen = trainer.interventions[0].search(trainer)
    for member in range(2):
        assert sorted(chosen[member].tolist()) == reference_search(original, member)


def test_without_fine_tuning_it_picks_the_examples_the_original_fits_best():
    original = trained()
    search = {**SEARCH, "rounds": 1, "inner_steps": 0, "weight_lr": 100.0}
    trainer = searching(original, search)
    chosen = trainer.interventions[0].search(trainer)
    x, y = original.data.splits["train"]
    with torch.no_grad():
        losses = F.cross_entropy(original.model(x).transpose(1, 2), y, reduction="none")
    k = original.data.size("forget")
    for member in range(2):
        assert set(chosen[member].tolist()) == set(losses[member].argsort()[:k].tolist())


def test_seed_k_of_an_ensemble_searches_as_its_single_run():
    together = searching(trained((0, 1, 2)), seeds=(0, 1, 2))
    alone = searching(trained((1,)), seeds=(1,))
    torch.testing.assert_close(together.interventions[0].search(together)[1:2],
                               alone.interventions[0].search(alone), rtol=0, atol=0)


def test_the_forget_and_retain_splits_become_the_searched_partition_of_train():
    trainer = searching(trained())
    chosen = trainer.interventions[0].search(trainer)
    trainer.interventions[0].on_start(trainer)
    x, y = trainer.data.splits["train"]
    fx, fy = trainer.data.splits["forget"]
    rx, ry = trainer.data.splits["retain"]
    for member in range(2):
        mine = chosen[member]
        rest = [i for i in range(y.shape[1]) if i not in set(mine.tolist())]
        torch.testing.assert_close(fx[member], x[member, mine], rtol=0, atol=0)
        assert torch.equal(fy[member], y[member, mine])
        torch.testing.assert_close(rx[member], x[member, rest], rtol=0, atol=0)
        assert torch.equal(ry[member], y[member, rest])


def test_the_probes_and_batches_see_the_searched_set():
    original = trained()
    trainer = searching(original, steps=1, train_split="forget")
    chosen = trainer.interventions[0].search(trainer)
    seen = {}
    trainer.run(on_probe=lambda step, metrics: seen.setdefault(step, metrics))
    x, y = original.data.splits["train"]
    with torch.no_grad():
        fits = original.model(x).argmax(-1) == y
    expected = torch.stack([fits[m, chosen[m]].float().mean() for m in range(2)])
    torch.testing.assert_close(seen[0]["accuracy/forget"], expected)
    assert torch.equal(trainer.train_y, trainer.data.splits["forget"][1])


def test_restart_trains_from_the_seeds_own_initialization():
    trainer = searching(trained(), {**SEARCH, "restart": True}, train_split="retain")
    trainer.interventions[0].on_start(trainer)
    fresh = Trainer(experiment())
    for p, q, r in zip(trainer.params, trainer.initial_params, fresh.params):
        torch.testing.assert_close(p, r, rtol=0, atol=0)
        torch.testing.assert_close(q, r, rtol=0, atol=0)


@pytest.mark.parametrize("restart", [False, True])
def test_a_resumed_run_continues_exactly(restart):
    original = trained()
    assert_resumes_exactly(lambda: searching(original, {**SEARCH, "restart": restart}, steps=8,
                                             train_split="retain"), first_steps=4)


def test_a_task_without_forget_and_retain_splits_is_one_line():
    spec = experiment(interventions=[SEARCH]).to_dict()
    spec["task"], spec["probes"] = TASK["base"], ["accuracy"]
    with pytest.raises(SpecError, match=r"interventions\[0\]: worst-case-forget-set .* task 'gaussian-mixture' has "
                                         r"no split 'forget'"):
        Trainer(Experiment.model_validate(spec))
