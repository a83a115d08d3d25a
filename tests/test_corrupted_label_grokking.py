"""Label corruption of `modular-arithmetic`, the Fourier IPR probe and IPR
pruning, against independent computations: the IPR of Doshi et al. (Eq.
3-4, r = 2) with np.fft on hand-made and on a model's weights, and pruning
against a hand-written forward pass of the quadratic MLP with the chosen
neurons' readout zeroed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from learnscope.catalog.corrupted_label_grokking import CorruptedLabelGrokking
from learnscope.errors import LearnscopeError, SpecError
from learnscope.probes.fourier import inverse_participation_ratio, neuron_ipr, pruned_units
from learnscope.spec import Experiment
from learnscope.tasks.modular_arithmetic import ModularArithmetic
from learnscope.train.trainer import Trainer

P = 13


def numpy_ipr(vector: np.ndarray, r: int = 2, transform: str = "rfft") -> float:
    spectrum = np.abs(np.fft.rfft(vector) if transform == "rfft" else np.fft.fft(vector))
    return float(np.sum((spectrum / np.sqrt(np.sum(spectrum**2))) ** (2 * r)))


# ---------------------------------------------------------------- the task


def table(p: int) -> np.ndarray:
    a, b = np.meshgrid(np.arange(p), np.arange(p), indexing="ij")
    return (a.reshape(-1) + b.reshape(-1)) % p


def test_no_noise_is_the_task_as_before():
    plain = ModularArithmetic(p=P, train_fraction=0.5)
    silent = ModularArithmetic(p=P, train_fraction=0.5, label_noise=0.0)
    assert plain.info().splits == ("train", "test") == silent.info().splits
    a, b = plain.build(3), silent.build(3)
    assert torch.equal(a.targets, b.targets) and torch.equal(a.targets, torch.from_numpy(table(P)))
    assert all(torch.equal(a.splits[s], b.splits[s]) for s in ("train", "test"))


@pytest.mark.parametrize("noise", [0.1, 0.35])
def test_corruption_changes_a_share_of_training_labels_only(noise):
    clean = ModularArithmetic(p=P, train_fraction=0.5).build(7)
    task = ModularArithmetic(p=P, train_fraction=0.5, label_noise=noise)
    data = task.build(7)
    assert task.info().splits == ("train", "test", "train_clean", "train_noisy")
    truth = table(P)
    train, test = data.splits["train"].numpy(), data.splits["test"].numpy()
    assert np.array_equal(train, clean.splits["train"].numpy())  # the same partition as without noise
    assert np.array_equal(data.targets.numpy()[test], truth[test])  # test labels stay true
    wrong = data.targets.numpy()[train] != truth[train]
    assert wrong.sum() == round(noise * len(train))  # every corrupted label is wrong
    assert np.array_equal(np.sort(data.splits["train_noisy"].numpy()), np.sort(train[wrong]))
    assert np.array_equal(np.sort(data.splits["train_clean"].numpy()), np.sort(train[~wrong]))
    assert ((data.targets >= 0) & (data.targets < P)).all()
    again = task.build(7)
    assert torch.equal(again.targets, data.targets)  # deterministic per seed
    assert not torch.equal(task.build(8).splits["train_noisy"], data.splits["train_noisy"])


def test_bad_noise_is_refused_naming_the_field():
    with pytest.raises(ValueError, match="label_noise"):
        ModularArithmetic(p=P, label_noise=1.0)
    with pytest.raises(ValueError, match="train_clean and train_noisy"):
        ModularArithmetic(p=5, train_fraction=0.2, label_noise=0.01)  # 5 examples, 0 corrupted


# ---------------------------------------------------------------- the IPR


def test_hand_made_spectra():
    n = np.arange(97)
    cosine = np.cos(2 * np.pi * 5 * n / 97 + 0.3)
    flat = np.zeros(97)
    flat[0] = 1.0  # a delta: every frequency with the same magnitude
    vectors = torch.tensor(np.stack([cosine, 3.0 * cosine, flat]))
    rfft = inverse_participation_ratio(vectors).numpy()
    np.testing.assert_allclose(rfft, [1.0, 1.0, 1 / 49], rtol=1e-12)  # one-sided: 97 // 2 + 1 bins
    full = inverse_participation_ratio(vectors, transform="fft").numpy()
    np.testing.assert_allclose(full, [0.5, 0.5, 1 / 97], rtol=1e-12)  # a cosine splits between +k and -k
    assert inverse_participation_ratio(torch.zeros(2, 97)).tolist() == [0.0, 0.0]


@pytest.mark.parametrize("r", [1, 2, 3])
@pytest.mark.parametrize("transform", ["rfft", "fft"])
def test_matches_numpy_on_random_vectors(r, transform):
    rng = np.random.default_rng(r)
    vectors = rng.normal(size=(3, 5, 41))
    got = inverse_participation_ratio(torch.tensor(vectors, dtype=torch.float32), r, transform).numpy()
    want = np.array([[numpy_ipr(v, r, transform) for v in row] for row in vectors])
    np.testing.assert_allclose(got, want, rtol=1e-6)
    if r == 1:  # the power 2 of a unit vector: 1 for any vector
        np.testing.assert_allclose(got, 1.0, rtol=1e-6)
    else:
        assert (got > 0).all() and (got < 0.5).all()  # random vectors spread over the frequencies


def test_refuses_what_is_no_vector():
    with pytest.raises(LearnscopeError, match="floating-point"):
        inverse_participation_ratio(torch.arange(5))


def experiment(probes, seeds=(0, 1), hidden=12, noise=0.2):
    return Experiment.model_validate({
        "task": {"name": "modular-arithmetic", "p": P, "train_fraction": 0.6, "label_noise": noise},
        "model": {"name": "mlp", "hidden": [hidden], "embed": 5, "activation": "quadratic", "bias": False},
        "recipe": {"optimizer": "adamw", "lr": 1e-2, "weight_decay": 1.0, "steps": 3},
        "probes": probes, "seeds": list(seeds)})


def numpy_neuron_ipr(model) -> np.ndarray:
    """Per seed and neuron: the U (position 0), V (position 1) and W IPRs
    averaged, from the weights read here with numpy."""
    E = model.embedding.weight.detach().numpy()[:, :P]  # [S, p, e]
    W1 = model.hidden[0].weight.detach().numpy()  # [S, 3e, N]
    W2 = model.head.weight.detach().numpy()  # [S, N, p]
    e = E.shape[-1]
    out = np.zeros((W1.shape[0], W1.shape[-1]))
    for s in range(W1.shape[0]):
        for k in range(W1.shape[-1]):
            u = E[s] @ W1[s, :e, k]
            v = E[s] @ W1[s, e : 2 * e, k]
            out[s, k] = (numpy_ipr(u) + numpy_ipr(v) + numpy_ipr(W2[s, k])) / 3
    return out


def test_probe_matches_numpy_on_a_models_weights():
    t = Trainer(experiment(["fourier_ipr", {"name": "fourier_ipr", "level": 0.2, "label": "low"}]))
    t.run()
    want = numpy_neuron_ipr(t.model)
    np.testing.assert_allclose(neuron_ipr(t.model, P).numpy(), want, rtol=1e-6)
    measured = t.measure()
    np.testing.assert_allclose(measured["fourier_ipr/mean"].numpy(), want.mean(1), rtol=1e-6)
    np.testing.assert_allclose(measured["fourier_ipr/periodic"].numpy(), (want >= 0.5).mean(1))
    np.testing.assert_allclose(measured["fourier_ipr@low/periodic"].numpy(), (want >= 0.2).mean(1))
    assert 0 < measured["fourier_ipr@low/periodic"].sum() and measured["fourier_ipr/periodic"].max() < 1


def test_a_periodic_network_scores_one():
    """Eq. 2's periodic solution, written into the weights: every neuron's U,
    V and W are cosines, so every neuron's IPR is 1."""
    t = Trainer(experiment(["fourier_ipr"], seeds=(0,), hidden=6, noise=0.0))
    n = np.arange(P)
    with torch.no_grad():
        e = t.model.embedding.weight.shape[-1]
        t.model.embedding.weight.zero_()
        t.model.embedding.weight[0, :P, 0] = torch.tensor(np.cos(2 * np.pi * n / P))
        t.model.embedding.weight[0, :P, 1] = torch.tensor(np.sin(2 * np.pi * n / P))
        for k in range(6):
            t.model.hidden[0].weight[0, :, k] = 0
            t.model.hidden[0].weight[0, 0, k] = np.cos(k)  # U_k,m = cos(2 pi m / p - k)
            t.model.hidden[0].weight[0, 1, k] = np.sin(k)
            t.model.hidden[0].weight[0, e, k] = 1.0
            t.model.head.weight[0, k] = torch.tensor(np.cos(2 * np.pi * (k % 3 + 1) * n / P + k))
    measured = t.measure()
    assert measured["fourier_ipr/mean"].item() == pytest.approx(1.0, abs=1e-9)
    assert measured["fourier_ipr/periodic"].item() == 1.0


# ---------------------------------------------------------------- pruning


def test_pruned_units_are_the_lowest_or_highest():
    ipr = torch.tensor([[0.3, 0.1, 0.9, 0.5], [0.2, 0.2, 0.8, 0.1]], dtype=torch.float64)
    assert pruned_units(ipr, 2).tolist() == [[True, True, False, False], [True, False, False, True]]
    assert pruned_units(ipr, 1, "highest").tolist() == [[False, False, True, False], [False, False, True, False]]


def numpy_accuracy_pruned(model, x: np.ndarray, y: np.ndarray, pruned: np.ndarray) -> np.ndarray:
    """Per seed: accuracy of f(x) = W (U e_a + V e_b + c)^2 (c: the `=` token's
    term) with the pruned neurons' readout rows set to zero, by hand."""
    E = model.embedding.weight.detach().numpy().astype(np.float64)
    W1 = model.hidden[0].weight.detach().numpy().astype(np.float64)
    W2 = model.head.weight.detach().numpy().astype(np.float64)
    accuracy = []
    for s in range(len(E)):
        h = np.concatenate([E[s][x[s, :, 0]], E[s][x[s, :, 1]], E[s][x[s, :, 2]]], axis=1) @ W1[s]
        readout = W2[s].copy()
        readout[pruned[s]] = 0
        accuracy.append(np.mean(np.argmax(h**2 @ readout, axis=1) == y[s]))
    return np.array(accuracy)


@pytest.mark.parametrize("order", ["lowest", "highest"])
def test_pruning_matches_a_hand_made_forward_pass(order):
    probe = {"name": "ipr_pruning", "fraction": 0.5, "order": order, "splits": ["test", "train_noisy"]}
    t = Trainer(experiment(["accuracy", probe], seeds=(0, 1, 2), hidden=16))
    t.run()
    measured = t.measure()
    pruned = pruned_units(torch.from_numpy(numpy_neuron_ipr(t.model)), 8, order).numpy()
    assert pruned.sum(1).tolist() == [8, 8, 8]
    for split in ("test", "train_noisy"):
        x, y = (v.numpy() for v in t.data.splits[split])
        np.testing.assert_allclose(measured[f"ipr_pruning/{split}"].numpy(),
                                   numpy_accuracy_pruned(t.model, x, y, pruned), atol=1e-6)
    # nothing pruned: the plain accuracy, by the same hand-made pass
    x, y = (v.numpy() for v in t.data.splits["test"])
    np.testing.assert_allclose(numpy_accuracy_pruned(t.model, x, y, np.zeros_like(pruned)),
                               measured["accuracy/test"].numpy(), atol=1e-6)


def test_pruning_leaves_the_model_unchanged():
    t = Trainer(experiment([{"name": "ipr_pruning", "fraction": 1.0}]))
    before = [p.detach().clone() for p in t.model.parameters()]
    measured = t.measure()
    assert all(torch.equal(a, b) for a, b in zip(before, t.model.parameters()))
    # every neuron pruned: the output is zero, argmax class 0, accuracy the share of label 0
    for split in ("train", "test", "train_clean", "train_noisy"):
        y = t.data.splits[split][1]
        np.testing.assert_allclose(measured[f"ipr_pruning/{split}"].numpy(), (y == 0).double().mean(1).numpy())


@pytest.mark.parametrize("model, match", [
    ({"name": "mlp", "hidden": [8, 8], "embed": 4}, "one hidden layer"),
    ({"name": "transformer", "d_model": 8, "heads": 1, "layers": 1}, "mlp"),
])
@pytest.mark.parametrize("probe", ["fourier_ipr", "ipr_pruning"])
def test_refuses_a_model_without_operand_weights(model, match, probe):
    spec = experiment([probe]).to_dict()
    spec["model"] = model
    with pytest.raises(SpecError, match=match):
        Trainer(Experiment.model_validate(spec))


def test_refuses_bad_options():
    with pytest.raises(SpecError, match="unknown split 'train_noisy'"):
        Trainer(experiment([{"name": "ipr_pruning", "splits": ["train_noisy"]}], noise=0.0))
    for bad, match in (({"name": "ipr_pruning", "order": "middle"}, "order: .*'lowest' or 'highest'"),
                       ({"name": "ipr_pruning", "fraction": 0}, "fraction"),
                       ({"name": "fourier_ipr", "transform": "dct"}, "transform: .*'rfft' or 'fft'"),
                       ({"name": "fourier_ipr", "r": 0}, "r: ")):
        with pytest.raises(SpecError, match=match):
            experiment([bad])


# ---------------------------------------------------------------- the phenomenon


def test_arms_are_the_same_at_both_sizes():
    phenomenon = CorruptedLabelGrokking()
    names = ["coexistence", "continued", "inversion"]
    assert [a.name for a in phenomenon.arms(True)] == [a.name for a in phenomenon.arms(False)] == names
    assert [a.starts_from for a in phenomenon.arms(True)] == [None, "coexistence", "coexistence"]
    quick = phenomenon.arms(True)[0].experiment
    assert quick.task.label_noise > 0 and quick.model.activation == "quadratic" and not quick.model.bias
    assert quick.recipe.weight_decay > 0
