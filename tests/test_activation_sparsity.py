"""The `activation_sparsity` probe against independent numpy computations:
on hand-made activations, and on an MLP's activations recomputed by a
hand-written forward pass from its weights (ReLU: the share of exact
zeros; GELU with `eps`: of near-zero entries); its random inputs; and the
`activation-sparsity` signature on made-up curves."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from learnscope.catalog.activation_sparsity import LAYERS, LEVEL, RANDOM_GAP, RISE, ActivationSparsity
from learnscope.errors import LearnscopeError, SpecError
from learnscope.models.base import Sites
from learnscope.probes.sparsity import random_inputs, zero_share
from learnscope.results import ArmData
from learnscope.spec import Experiment
from learnscope.store.base import RunRecord
from learnscope.train.trainer import Trainer


def numpy_zero_share(acts: np.ndarray, eps: float = 0.0) -> np.ndarray:
    """Per seed (first axis): zeros (|a| <= eps) over all entries, counted in a loop over seeds."""
    return np.array([np.count_nonzero(np.abs(a) <= eps) / a.size for a in acts])


# ---------------------------------------------------------------- zero_share on hand-made activations


def test_hand_made_activations():
    acts = torch.tensor([[[0.0, 1.0, 0.0, 2.0], [0.0, 0.0, 0.0, 3.0]],  # 5 of 8 zeros
                         [[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, -0.0]]])  # -0.0 is a zero: 1 of 8
    assert zero_share(acts).tolist() == [5 / 8, 1 / 8]
    near = torch.tensor([[[1e-4, -1e-4, 0.5, -2.0]]])
    assert zero_share(near).tolist() == [0.0]  # eps 0: exact zeros only
    assert zero_share(near, eps=1e-3).tolist() == [0.5]  # |a| <= eps, both signs
    assert zero_share(near, eps=1e-4).tolist() == [0.5]  # the bound itself counts


@pytest.mark.parametrize("shape", [(3, 50, 16), (2, 7, 5, 12)])  # [S, N, D] and a sequence site [S, B, T, D]
@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_matches_numpy(shape, eps):
    rng = np.random.default_rng(0)
    acts = np.maximum(rng.normal(0, 1, shape), 0).astype(np.float32)  # a ReLU's output: about half zeros
    acts[0, : shape[1] // 2] = 0  # seeds differ
    got = zero_share(torch.from_numpy(acts), eps)
    want = numpy_zero_share(acts, eps)
    np.testing.assert_allclose(got.numpy(), want, rtol=0, atol=1e-15)
    assert got.dtype == torch.float64 and len(set(want.round(6))) == shape[0]


def test_bad_arguments_are_one_line():
    with pytest.raises(LearnscopeError, match=r"zero_share: activations must be a torch.Tensor \[S, N, \.\.\.\]"):
        zero_share(torch.zeros(4))
    with pytest.raises(LearnscopeError, match="zero_share: activations must hold floating-point numbers"):
        zero_share(torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(LearnscopeError, match="zero_share: eps must be >= 0"):
        zero_share(torch.zeros(2, 3), eps=-0.1)
    with pytest.raises(LearnscopeError, match="zero_share: activations hold no entries"):
        zero_share(torch.zeros(2, 0, 3))


# ---------------------------------------------------------------- the probe on an MLP, by a hand forward pass

TASK = {"name": "gaussian-mixture", "classes": 4, "dim": 6, "samples": 96, "test_samples": 40}


def mlp_trainer(probes, activation="relu", seeds=(0, 1, 2), steps=30) -> Trainer:
    t = Trainer(Experiment.model_validate({
        "task": TASK, "model": {"name": "mlp", "hidden": [24, 16], "activation": activation}, "seeds": list(seeds),
        "recipe": {"optimizer": "sgd", "lr": 0.3, "steps": steps, "probe_every": steps, "probe_log_points": 0},
        "probes": probes}))
    t.run()  # trained a little: the shares differ from the initial ones and across seeds
    return t


def hand_forward(t: Trainer, x: np.ndarray, activation: str = "relu") -> list[np.ndarray]:
    """Each hidden layer's activations [S, N, width], in numpy float64 from the stacked weights."""
    acts, h = [], x.astype(np.float64)
    for layer in t.model.hidden:
        pre = h @ layer.weight.detach().double().numpy() + layer.bias.detach().double().numpy()
        if activation == "relu":
            h = np.maximum(pre, 0)
        else:  # GELU, exact (erf) form, as torch's default
            from math import erf
            h = 0.5 * pre * (1 + np.vectorize(erf)(pre / np.sqrt(2)))
        acts.append(h)
    return acts


def test_probe_matches_a_hand_forward_pass_on_each_layer_and_split():
    probes = [{"name": "activation_sparsity", "site": site, "split": split}
              for site in ("hidden.0", "hidden.1") for split in ("train", "test")]
    t = mlp_trainer(probes)
    measured = t.measure()
    assert sorted(measured) == sorted(f"activation_sparsity/{site}/{split}"
                                      for site in ("hidden.0", "hidden.1") for split in ("train", "test"))
    for split in ("train", "test"):
        acts = hand_forward(t, t.data.splits[split][0].numpy())
        for i, a in enumerate(acts):
            want = numpy_zero_share(a)
            np.testing.assert_allclose(measured[f"activation_sparsity/hidden.{i}/{split}"].numpy(), want, atol=1e-12)
            assert 0.05 < want.min() and want.max() < 0.95 and len(set(want)) > 1


def test_max_examples_reads_the_first_examples():
    t = mlp_trainer([{"name": "activation_sparsity", "site": "hidden.1", "max_examples": 10}])
    want = numpy_zero_share(hand_forward(t, t.data.splits["train"][0][:, :10].numpy())[1])
    np.testing.assert_allclose(t.measure()["activation_sparsity/hidden.1/train"].numpy(), want, atol=1e-12)
    whole = numpy_zero_share(hand_forward(t, t.data.splits["train"][0].numpy())[1])
    assert not np.allclose(want, whole)  # it did read fewer


def test_eps_counts_the_near_zero_activations_of_a_gelu():
    eps = 0.05
    t = mlp_trainer([{"name": "activation_sparsity", "site": "hidden.0", "eps": eps, "label": "near"},
                     {"name": "activation_sparsity", "site": "hidden.0"}], activation="gelu")
    measured = t.measure()
    acts = hand_forward(t, t.data.splits["train"][0].numpy(), "gelu")[0]
    near = numpy_zero_share(acts, eps)
    assert near.min() > 0.02  # there are near-zero entries to count, and
    np.testing.assert_allclose(measured["activation_sparsity@near/hidden.0/train"].numpy(), near, atol=1e-12)
    assert (measured["activation_sparsity/hidden.0/train"] == 0).all()  # a GELU has no exact zeros here


# ---------------------------------------------------------------- random inputs


def test_random_vector_inputs_match_the_split_and_the_probe_reads_them():
    probe = {"name": "activation_sparsity", "site": "hidden.0", "inputs": "random", "max_examples": 64}
    t = mlp_trainer([probe, {**probe, "site": "hidden.1"}])
    x = t.data.splits["train"][0][:, :64]
    noise = random_inputs(x, "vector", None, t.seeds, "train")
    assert noise.shape == x.shape and noise.dtype == x.dtype
    for k in range(len(t.seeds)):  # Gaussian with each seed's own per-feature mean and std (float64 statistics)
        np.testing.assert_allclose(noise[k].double().mean(0).numpy(), x[k].double().mean(0).numpy(),
                                   atol=4 * x[k].double().std(0).max().item() / 8)
    assert not torch.equal(noise[0], noise[1])  # each seed its own draw
    assert torch.equal(noise, random_inputs(x, "vector", None, t.seeds, "train"))  # the same at every call
    measured = t.measure()
    acts = hand_forward(t, noise.numpy())
    for i in range(2):
        np.testing.assert_allclose(measured[f"activation_sparsity/hidden.{i}/random"].numpy(),
                                   numpy_zero_share(acts[i]), atol=1e-12)
    # and they are not the split's own examples
    assert not np.allclose(measured["activation_sparsity/hidden.0/random"].numpy(),
                           numpy_zero_shares_of_split(t, 64))


def numpy_zero_shares_of_split(t: Trainer, m: int) -> np.ndarray:
    return numpy_zero_share(hand_forward(t, t.data.splits["train"][0][:, :m].numpy())[0])


def test_random_inputs_of_a_seed_do_not_depend_on_the_other_seeds():
    probe = {"name": "activation_sparsity", "site": "hidden.0", "inputs": "random"}
    together = mlp_trainer([probe], seeds=(0, 1, 2)).measure()["activation_sparsity/hidden.0/random"]
    alone = mlp_trainer([probe], seeds=(2,)).measure()["activation_sparsity/hidden.0/random"]
    assert together[2].item() == pytest.approx(alone[0].item(), abs=1e-12)


def test_random_tokens_on_a_transformer():
    t = Trainer(Experiment.model_validate({
        "task": {"name": "markov-text", "vocab": 12, "length": 6, "train_sequences": 64, "test_sequences": 8},
        "model": {"name": "transformer", "layers": 2, "d_model": 16, "heads": 2, "d_mlp": 32},
        "recipe": {"steps": 1}, "seeds": [0, 1],
        "probes": [{"name": "activation_sparsity", "site": f"mlp.{layer}", "inputs": inputs}
                   for layer in range(2) for inputs in ("data", "random")]}))
    x = t.data.splits["train"][0]
    tokens = random_inputs(x, "tokens", t.info.vocab_size, t.seeds, "train")
    assert tokens.shape == x.shape and tokens.dtype == x.dtype
    assert tokens.min() >= 0 and tokens.max() < t.info.vocab_size and len(tokens.unique()) == t.info.vocab_size
    assert not torch.equal(tokens[:, :, 0], x[:, :, 0])  # the data starts with <bos>; random tokens do not
    measured = t.measure()
    for inputs, examples in (("data", x), ("random", tokens)):
        capture = Sites(read={"mlp.0", "mlp.1"})
        with torch.no_grad():
            t.model.eval()
            t.model(examples, capture)
        for layer in range(2):
            acts = capture.acts[f"mlp.{layer}"]
            assert acts.shape == (2, 64, x.shape[2], 32)  # every position, every hidden unit
            name = f"activation_sparsity/mlp.{layer}/{'train' if inputs == 'data' else 'random'}"
            np.testing.assert_allclose(measured[name].numpy(), numpy_zero_share(acts.numpy()), atol=1e-12)


# ---------------------------------------------------------------- refusals


def test_bad_options_are_refused_naming_what_is_valid():
    def build(probe, model=None):
        return Trainer(Experiment.model_validate({
            "task": TASK, "model": model or {"name": "mlp", "hidden": [8]}, "recipe": {"steps": 1}, "seeds": 1,
            "probes": [probe]}))

    with pytest.raises(SpecError, match=r"probes\[0\].inputs: Input should be 'data' or 'random'"):
        build({"name": "activation_sparsity", "site": "hidden.0", "inputs": "noise"})
    with pytest.raises(SpecError, match=r"probes\[0\].site: Field required"):
        build({"name": "activation_sparsity"})
    with pytest.raises(SpecError, match=r"probes\[0\].eps: Input should be greater than or equal to 0"):
        build({"name": "activation_sparsity", "site": "hidden.0", "eps": -0.1})
    with pytest.raises(SpecError, match=r"probes\[0\].site: unknown site 'mlp.0'.*hidden.0"):
        build({"name": "activation_sparsity", "site": "mlp.0"})
    with pytest.raises(SpecError, match=r"probes\[0\].split: unknown split 'valid'"):
        build({"name": "activation_sparsity", "site": "hidden.0", "split": "valid"})
    with pytest.raises(SpecError, match=r"probes\[1\]: metric 'activation_sparsity/hidden.0/random' is already"):
        Trainer(Experiment.model_validate({
            "task": TASK, "model": {"name": "mlp", "hidden": [8]}, "recipe": {"steps": 1}, "seeds": 1,
            "probes": [{"name": "activation_sparsity", "site": "hidden.0", "inputs": "random"},
                       {"name": "activation_sparsity", "site": "hidden.0", "inputs": "random", "split": "test"}]}))


# ---------------------------------------------------------------- the signature, on made-up curves


def fake_arm(train, random, test=None) -> dict[str, ArmData]:
    """One arm `transformer` whose shares per layer follow {layer: [[start, end] per seed]}."""
    rows = []
    for layer in range(LAYERS):
        for kind, curves in (("train", train), ("random", random), ("test", test or train)):
            for seed, (start, end) in enumerate(curves[layer]):
                for step, value in ((0, start), (100, end)):
                    rows.append(("r", seed, step, f"activation_sparsity/mlp.{layer}/{kind}", value))
    seeds = list(range(len(train[0])))
    record = RunRecord("r.transformer", "activation-sparsity", "experiment", "r", "transformer", {}, seeds,
                       "finished", None, 0.0, None, "", "")
    return {"transformer": ArmData(record, pd.DataFrame(rows, columns=["run_id", "seed", "step", "name", "value"]))}


def test_the_signature_needs_a_rise_to_the_level_and_more_zeros_than_on_random_tokens():
    low, high = 0.5, 0.5 + RISE + 0.05
    assert high >= LEVEL
    train = {layer: [(low, high)] * 10 for layer in range(LAYERS)}
    random = {layer: [(low, high - RANDOM_GAP - 0.01)] * 10 for layer in range(LAYERS)}
    verdict = ActivationSparsity().check(fake_arm(train, random))
    assert verdict.ok and all(verdict.passed)
    # seed 0: the last layer barely rises; seed 1: random tokens as sparse as the data in every layer;
    # seed 2: rises enough but from a low start, so ends below LEVEL; seed 3: held-out sequences do not rise;
    # seed 4: random tokens sparser than the data in layer 0 only, and the network as a whole still less sparse
    train[LAYERS - 1][0] = (low, low + RISE / 2)
    for layer in range(LAYERS):
        random[layer][1] = (low, high)
        train[layer][2] = (LEVEL - RISE - 0.02, LEVEL - 0.01)
    test = {layer: list(train[layer]) for layer in range(LAYERS)}
    test[0][3] = (low, low)
    random[0][4] = (low, high + 0.005)
    random[1][4] = (low, high - 4 * RANDOM_GAP)
    verdict = ActivationSparsity().check(fake_arm(train, random, test))
    assert verdict.passed == [False, False, False, False] + [True] * 6
    assert "training inputs rose by only" in verdict.failures[0]
    assert "random tokens'" in verdict.failures[1]
    assert "ended at" in verdict.failures[2]
    assert "held-out sequences rose by only" in verdict.failures[3]
    assert not verdict.ok  # 6 of 10 seeds: 9 needed (90%)
    assert verdict.measures["network train - random"][4] == pytest.approx((-0.005 + 4 * RANDOM_GAP) / 2)
