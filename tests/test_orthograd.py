"""⊥Grad (`recipe.orthograd`, "Grokking at the Edge of Numerical Stability"):
each parameter's gradient, seed by seed, made orthogonal to its weights and
rescaled to its own norm before the wrapped optimizer's step. Checked
against numpy, per seed, through the trainer (ensemble = single runs) and
across a resume."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from learnscope.errors import SpecError
from learnscope.spec import Experiment
from learnscope.stacked_optim import SGD, Adam, AdamW, OrthoGrad, orthogonalize_
from learnscope.train.trainer import Trainer


def numpy_orthograd(w: np.ndarray, g: np.ndarray) -> np.ndarray:
    """The definition for one seed's tensor, in float64."""
    w, g = w.astype(np.float64).ravel(), g.astype(np.float64).ravel()
    perpendicular = g - (w @ g) / (w @ w) * w
    return perpendicular * np.linalg.norm(g) / np.linalg.norm(perpendicular)


def stacked(seeds: int, *shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(seeds, *shape, generator=torch.Generator().manual_seed(seed))


def test_the_projection_per_seed_is_orthogonal_at_the_original_norm():
    direction = stacked(3, 5, 7, seed=1)
    w = direction * torch.tensor([1e-3, 1.0, 1e3]).view(3, 1, 1)
    # about 45° from w in every seed (near-parallel g and w would leave g⊥ to float32 rounding)
    g = (stacked(3, 5, 7, seed=2) + direction) * torch.tensor([1e2, 1.0, 1e-2]).view(3, 1, 1)
    original = g.clone()
    orthogonalize_(w, g)
    for k in range(3):
        wk, gk, ok = w[k].double().ravel(), g[k].double().ravel(), original[k].double().ravel()
        assert abs(float(wk @ gk)) <= 1e-5 * float(wk.norm() * gk.norm())  # ⟨g⊥, w⟩ ≈ 0
        assert abs(float(wk @ ok)) > 1e-2 * float(wk.norm() * ok.norm())  # and it was not before
        np.testing.assert_allclose(float(gk.norm()), float(ok.norm()), rtol=1e-6)  # ‖g⊥‖ = ‖g‖
        np.testing.assert_allclose(g[k].numpy().ravel(), numpy_orthograd(w[k].numpy(), original[k].numpy()),
                                   rtol=1e-4, atol=1e-6 * float(ok.norm()))
        # each seed's slice reads only itself: the same bits as that slice alone
        alone = original[k : k + 1].clone()
        orthogonalize_(w[k : k + 1], alone)
        assert torch.equal(alone[0], g[k])
    # seeds of such different sizes: one projection of the whole stacked tensor would mix them
    whole = numpy_orthograd(w.numpy(), original.numpy()).reshape(g.shape)
    assert not np.allclose(whole, g.numpy(), rtol=1e-2)


def test_zero_weights_leave_the_gradient_as_it_is():
    """The authors' ε: ⟨w, w⟩ + 1e-30 keeps the projection finite at w = 0."""
    w, g = torch.zeros(2, 4), stacked(2, 4, seed=3)
    original = g.clone()
    orthogonalize_(w, g)
    assert torch.equal(g, original)


@pytest.mark.parametrize("base", ["sgd", "sgd-momentum", "adam", "adamw"])
def test_one_step_is_the_wrapped_optimizers_step_on_the_projected_gradient(base):
    """Two seeds, a matrix and a bias: the wrapped step equals the plain
    optimizer given numpy's ⊥Grad gradient, and differs from the plain step."""
    shapes = [(4, 3), (4,)]
    weights = [stacked(2, *s, seed=10 + i) for i, s in enumerate(shapes)]
    grads = [stacked(2, *s, seed=20 + i) + 0.3 * w for i, (s, w) in enumerate(zip(shapes, weights))]
    build = {"sgd": lambda ps: SGD(ps, lr=0.1, weight_decay=0.01),
             "sgd-momentum": lambda ps: SGD(ps, lr=0.1, momentum=0.9),
             "adam": lambda ps: Adam(ps, lr=0.01, betas=(0.9, 0.98), weight_decay=0.01),
             "adamw": lambda ps: AdamW(ps, lr=0.01, betas=(0.9, 0.98), weight_decay=0.1)}[base]
    results = {}
    for kind in ("orthograd", "projected", "plain"):
        params = [torch.nn.Parameter(w.clone()) for w in weights]
        for p, w, g in zip(params, weights, grads):
            if kind == "projected":
                p.grad = torch.stack([torch.tensor(numpy_orthograd(w[k].numpy(), g[k].numpy()),
                                                   dtype=torch.float32).view_as(g[k]) for k in range(2)])
            else:
                p.grad = g.clone()
        optimizer = build(params)
        (OrthoGrad(optimizer) if kind == "orthograd" else optimizer).step()
        results[kind] = [p.detach().clone() for p in params]
    for a, b, c in zip(results["orthograd"], results["projected"], results["plain"]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        assert not torch.allclose(a, c, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- through the trainer

STEPS = 30
TASK = {"name": "modular-arithmetic", "p": 13, "op": "+", "train_fraction": 0.5}
MODEL = {"name": "mlp", "embed": 8, "hidden": [32]}
RECIPES = {
    "sgd": {"optimizer": "sgd", "lr": 0.5, "momentum": 0.5, "weight_decay": 0.01},
    "adam": {"optimizer": "adam", "lr": 1e-2},
    "adamw": {"optimizer": "adamw", "lr": 1e-2, "weight_decay": 0.5},
}


def experiment(optimizer: str, seeds: list[int], orthograd: bool = True) -> Experiment:
    recipe = {**RECIPES[optimizer], "steps": STEPS, "orthograd": orthograd, "probe_every": 10, "probe_log_points": 0,
              "checkpoint_every": 10}
    return Experiment.model_validate({"task": TASK, "model": MODEL, "recipe": recipe, "seeds": seeds,
                                      "probes": ["loss", "accuracy"]})


def trained(optimizer: str, seeds: list[int], orthograd: bool = True) -> Trainer:
    trainer = Trainer(experiment(optimizer, seeds, orthograd))
    trainer.run()
    return trainer


def test_the_switch_is_off_by_default_and_takes_a_boolean():
    assert not Experiment.model_validate({"task": TASK, "model": MODEL}).recipe.orthograd
    assert isinstance(Trainer(experiment("adamw", [0])).optimizer, OrthoGrad)
    assert not isinstance(Trainer(experiment("adamw", [0], orthograd=False)).optimizer, OrthoGrad)
    with pytest.raises(SpecError, match="recipe.orthograd"):
        Experiment.model_validate({"task": TASK, "model": MODEL, "recipe": {"orthograd": "sometimes"}})


@pytest.mark.parametrize("optimizer", list(RECIPES))
def test_an_ensemble_equals_its_single_runs(optimizer):
    """SGD and the model are exact across ensemble sizes here, so with SGD the
    projection must be too: bit for bit. The fused Adam kernels are not (the
    plain optimizer neither): there, the equivalence tests' tolerances."""
    ensemble = trained(optimizer, [0, 1, 2])
    for k in range(3):
        single = trained(optimizer, [k])
        for p_ens, p_single in zip(ensemble.params, single.params):
            if optimizer == "sgd":
                assert torch.equal(p_ens[k], p_single[0])
            else:
                torch.testing.assert_close(p_ens[k], p_single[0], rtol=1e-5, atol=1e-6)
    plain = trained(optimizer, [0, 1, 2], orthograd=False)
    assert not all(torch.allclose(a, b, rtol=1e-3, atol=1e-4) for a, b in zip(ensemble.params, plain.params))


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_resume_is_exact(optimizer):
    straight = trained(optimizer, [0, 1])
    first = Trainer(experiment(optimizer, [0, 1]))
    while first.step < 10:
        first.train_step()
    tensors, meta = first.state()
    assert any(key.startswith("optimizer/") for key in tensors)  # the wrapped optimizer's state travels
    resumed = Trainer(experiment(optimizer, [0, 1]))
    resumed.load_state(copy.deepcopy(tensors), copy.deepcopy(meta))
    resumed.run()
    for a, b in zip(straight.params, resumed.params):
        assert torch.equal(a, b)


def test_the_schedule_and_a_reset_reach_the_wrapped_optimizer():
    trainer = Trainer(Experiment.model_validate({
        "task": TASK, "model": MODEL, "seeds": [0],
        "recipe": {"optimizer": "adamw", "lr": 1e-2, "steps": 10, "orthograd": True, "schedule": "warmup_cosine",
                   "warmup_steps": 4}}))
    optimizer = trainer.optimizer
    assert isinstance(optimizer, OrthoGrad)
    trainer.train_step()
    assert optimizer.base.param_groups[0]["lr"] == pytest.approx(1e-2 / 4)
    assert optimizer.state is optimizer.base.state and len(optimizer.state) == len(trainer.params)
