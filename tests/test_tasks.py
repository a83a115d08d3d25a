"""Tasks against independent computations: the modular tables by plain
Python arithmetic, Hermite targets by scipy, class counts and label noise
by counting."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.special
import torch

from learnscope.errors import SpecError
from learnscope.tasks.gaussian_mixture import GaussianMixture
from learnscope.tasks.modular_arithmetic import ModularArithmetic
from learnscope.tasks.teacher_student import TeacherStudent


@pytest.mark.parametrize("op,p", [("+", 11), ("-", 11), ("*", 12), ("/", 13)])
def test_modular_table_is_the_operation(op, p):
    task = ModularArithmetic(p=p, op=op, train_fraction=0.5)
    data = task.build(seed=0)
    python_op = {
        "+": lambda a, b: (a + b) % p,
        "-": lambda a, b: (a - b) % p,
        "*": lambda a, b: (a * b) % p,
        "/": lambda a, b: (a * pow(b, -1, p)) % p,
    }[op]
    pairs = {(int(a), int(b)) for a, b, _ in data.inputs.tolist()}
    expected_pairs = {(a, b) for a in range(p) for b in range(1 if op == "/" else 0, p)}
    assert pairs == expected_pairs
    for (a, b, eq), c in zip(data.inputs.tolist(), data.targets.tolist()):
        assert eq == p  # the '=' token
        assert c == python_op(a, b)


def test_modular_split_partitions_the_table_per_seed():
    task = ModularArithmetic(p=17, train_fraction=0.3)
    a, b = task.build(1), task.build(2)
    n = 17 * 17
    for data in (a, b):
        train, test = data.splits["train"], data.splits["test"]
        assert len(train) == round(0.3 * n) and len(train) + len(test) == n
        assert sorted(torch.cat([train, test]).tolist()) == list(range(n))
    assert not torch.equal(a.splits["train"], b.splits["train"])
    assert torch.equal(task.build(1).splits["train"], a.splits["train"])


def test_division_needs_a_prime():
    with pytest.raises(SpecError, match="prime"):
        _validate_task("modular-arithmetic", p=12, op="/")


def _validate_task(name, **params):
    from learnscope.spec import Experiment

    return Experiment.model_validate({"task": {"name": name, **params}, "model": {"name": "mlp"}})


@pytest.mark.parametrize("samples,classes,imbalance", [(100, 10, 1.0), (103, 10, 1.0), (1000, 4, 8.0)])
def test_gaussian_mixture_class_counts_are_exact(samples, classes, imbalance):
    task = GaussianMixture(classes=classes, dim=3, samples=samples, test_samples=57, imbalance=imbalance)
    data = task.build(seed=3)
    k = np.arange(classes)
    p = imbalance ** (-k / (classes - 1))
    p = p / p.sum()
    for split, n in (("train", samples), ("test", 57)):
        counts = np.bincount(data.targets[data.splits[split]].numpy(), minlength=classes)
        assert counts.sum() == n
        assert np.all(np.abs(counts - p * n) < 1.0), (split, counts, p * n)
    train_counts = np.bincount(data.targets[data.splits["train"]].numpy(), minlength=classes)
    if imbalance > 1:
        assert train_counts[0] / train_counts[-1] == pytest.approx(imbalance, rel=0.05)


def test_gaussian_mixture_label_noise_flips_exactly_that_fraction():
    clean = GaussianMixture(classes=5, dim=4, samples=200, label_noise=0.0).build(seed=7)
    noisy = GaussianMixture(classes=5, dim=4, samples=200, label_noise=0.25).build(seed=7)
    assert torch.equal(clean.inputs, noisy.inputs)
    flipped = (clean.targets != noisy.targets).nonzero().flatten()
    assert len(flipped) == 50
    assert sorted(flipped.tolist()) == sorted(noisy.splits["train_noisy"].tolist())
    assert len(noisy.splits["train_clean"]) == 150
    assert torch.equal(clean.targets[200:], noisy.targets[200:])  # test labels stay clean


def test_gaussian_mixture_means_at_the_stated_separation():
    task = GaussianMixture(classes=3, dim=8, samples=30000, test_samples=1, separation=2.5)
    data = task.build(seed=0)
    x, y = data.inputs[:30000].double(), data.targets[:30000]
    for c in range(3):
        mean = x[y == c].mean(0)
        assert mean.norm().item() == pytest.approx(2.5, abs=0.05)
        assert (x[y == c] - mean).std(0).mean().item() == pytest.approx(1.0, abs=0.03)


@pytest.mark.parametrize("degree", [1, 2, 3, 5])
def test_polynomial_target_is_the_normalized_hermite(degree):
    task = TeacherStudent(teacher="polynomial", input_dim=6, degree=degree, samples=50, test_samples=20)
    data = task.build(seed=4)
    x = data.inputs.double().numpy()
    y = data.targets.double().numpy()[:, 0]
    # the direction beta is the one unit vector that makes the target a function of x . beta: recover it
    # from the seed's generator exactly as documented (first draws: x, then beta)
    from learnscope.seeding import generator

    gen = generator(4, "data")
    torch.randn(70, 6, generator=gen, dtype=torch.float64)
    beta = torch.randn(6, generator=gen, dtype=torch.float64).numpy()
    z = x @ (beta / np.linalg.norm(beta))
    want = scipy.special.eval_hermitenorm(degree, z) / math.sqrt(math.factorial(degree))
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)


def test_teacher_targets_are_standardized_and_test_is_clean():
    noisy = TeacherStudent(teacher="mlp", input_dim=5, samples=4000, test_samples=500, noise=0.5).build(seed=2)
    clean = TeacherStudent(teacher="mlp", input_dim=5, samples=4000, test_samples=500, noise=0.0).build(seed=2)
    y = clean.targets[:, 0].double()
    assert y.mean().item() == pytest.approx(0.0, abs=1e-6)
    assert y.std().item() == pytest.approx(1.0, abs=1e-6)
    residual = (noisy.targets - clean.targets)[:, 0]
    assert residual[:4000].std().item() == pytest.approx(0.5, rel=0.05)
    assert torch.all(residual[4000:] == 0)
