"""The instability probes of "Small-scale proxies for large-scale Transformer
training instabilities" against independent computations: the max attention
logit by a plain loop over heads and causal pairs in numpy, the attention
entropy by scipy.stats.entropy, log Z by scipy.special.logsumexp; z-loss
against a hand computation of its term and gradient, ensembles against
single runs; and the attention-logit-growth signature on made-up curves."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.special import logsumexp
from scipy.stats import entropy as scipy_entropy

from helpers import assert_resumes_exactly, cli
from learnscope.catalog.attention_logit_growth import (
    BOUND,
    COLLAPSED,
    ENTROPY,
    GROWN,
    HIGH,
    KEPT,
    LOG_Z,
    LOGITS,
    LOSS,
    LOW,
    PLATEAU,
    QK,
    RATIO,
    AttentionLogitGrowth,
)
from learnscope.errors import LearnscopeError, SpecError
from learnscope.losses import IGNORE
from learnscope.models.base import Sites
from learnscope.probes.stability import attention_entropy, log_z, max_attention_logits, uniform_entropy
from learnscope.results import ArmData
from learnscope.spec import Experiment
from learnscope.store.base import RunRecord
from learnscope.train.trainer import Trainer

# ---------------------------------------------------------------- the functions, against numpy and scipy


def numpy_max_logit(q: np.ndarray, k: np.ndarray) -> np.ndarray:
    """q, k [S, N, T, H, dh] -> per seed, max |q_i . k_j| / sqrt(dh) over examples, heads and j <= i, by loops."""
    S, N, T, H, dh = q.shape
    out = np.zeros(S)
    for s in range(S):
        best = 0.0
        for n in range(N):
            for h in range(H):
                for i in range(T):
                    for j in range(i + 1):
                        best = max(best, abs(float(np.dot(q[s, n, i, h], k[s, n, j, h]))) / math.sqrt(dh))
        out[s] = best
    return out


def numpy_entropy(pattern: np.ndarray) -> np.ndarray:
    """pattern [S, N, H, T, T] -> per seed, the mean over examples, heads and rows of scipy's entropy (nats)."""
    S, N, H, T, _ = pattern.shape
    return np.array([np.mean([scipy_entropy(pattern[s, n, h, i]) for n in range(N) for h in range(H) for i in range(T)])
                     for s in range(S)])


@pytest.mark.parametrize("shape", [(2, 3, 5, 2, 4), (1, 1, 1, 1, 1), (3, 2, 4, 3, 2)])
def test_max_attention_logit_matches_a_loop_over_heads_and_causal_pairs(shape):
    rng = np.random.default_rng(sum(shape))
    q, k = rng.normal(0, 2, shape), rng.normal(0, 2, shape)
    got = max_attention_logits(torch.from_numpy(q).float(), torch.from_numpy(k).float())
    assert got.dtype == torch.float64 and got.shape == (shape[0],)
    np.testing.assert_allclose(got.numpy(), numpy_max_logit(q.astype(np.float32), k.astype(np.float32)), rtol=1e-6)


def test_the_causal_mask_leaves_future_keys_out_and_the_sign_counts_by_magnitude():
    q, k = torch.zeros(2, 1, 3, 1, 4), torch.zeros(2, 1, 3, 1, 4)
    q[0, 0, 0, 0, 0], k[0, 0, 2, 0, 0] = 100.0, 100.0  # query 0 with key 2: a future pair, masked
    q[1, 0, 2, 0, 1], k[1, 0, 1, 0, 1] = 6.0, -3.0  # query 2 with key 1: -18 / sqrt(4)
    assert max_attention_logits(q, k).tolist() == [0.0, 9.0]


def test_attention_entropy_matches_scipy_with_zeros_in_the_pattern():
    rng = np.random.default_rng(0)
    S, N, H, T = 2, 3, 2, 5
    scores = rng.normal(0, 3, (S, N, H, T, T))
    scores[..., np.triu_indices(T, 1)[0], np.triu_indices(T, 1)[1]] = -np.inf  # causal: exact zeros
    pattern = torch.from_numpy(scores).softmax(-1)
    got = attention_entropy(pattern)
    np.testing.assert_allclose(got.numpy(), numpy_entropy(pattern.numpy()), rtol=1e-12)
    even = torch.tril(torch.ones(T, T, dtype=torch.float64)) / torch.arange(1, T + 1).unsqueeze(1)
    np.testing.assert_allclose(attention_entropy(even.expand(1, 1, 1, T, T)).item(), uniform_entropy(T), rtol=1e-12)
    one_hot = torch.eye(T).expand(1, 2, 3, T, T)
    assert attention_entropy(one_hot).item() == 0.0


def test_bad_arguments_are_refused_in_one_line():
    with pytest.raises(LearnscopeError, match=r"\[S, N, T, H, D\]"):
        max_attention_logits(torch.zeros(2, 3, 4), torch.zeros(2, 3, 4))
    with pytest.raises(LearnscopeError, match="k has"):
        max_attention_logits(torch.zeros(1, 2, 3, 2, 4), torch.zeros(1, 2, 3, 2, 5))
    with pytest.raises(LearnscopeError, match="floating"):
        attention_entropy(torch.zeros(1, 1, 1, 2, 2, dtype=torch.long))


def lm_trainer(**fields) -> Trainer:
    return Trainer(Experiment.model_validate({**lm_spec(), **fields}))


def test_log_z_matches_scipy_per_example_over_scored_positions():
    rng = np.random.default_rng(1)
    info = lm_trainer().info
    outputs = rng.normal(0, 4, (2, 3, 6, info.output_dim))
    targets = rng.integers(0, info.output_dim, (2, 3, 6))
    targets[0, 1, :4] = IGNORE  # example 1 of seed 0 is scored at its last 2 positions only
    lse = logsumexp(outputs, -1)
    scored = targets != IGNORE
    want = (lse * scored).sum(-1) / scored.sum(-1)
    want_squared = (lse ** 2 * scored).sum(-1) / scored.sum(-1)
    got = log_z(info, torch.from_numpy(outputs), torch.from_numpy(targets))
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12)
    np.testing.assert_allclose(log_z(info, torch.from_numpy(outputs), torch.from_numpy(targets), 2).numpy(),
                               want_squared, rtol=1e-12)


# ---------------------------------------------------------------- the probes, on the transformer

TASK = {"name": "markov-text", "vocab": 12, "length": 6, "branching": 2, "train_sequences": 32, "test_sequences": 16}
MODEL = {"name": "transformer", "layers": 2, "d_model": 16, "heads": 2, "d_mlp": 32}
PROBES = [{"name": "attention_logits", "max_examples": 10}, {"name": "attention_entropy", "max_examples": 10},
          {"name": "output_log_z", "max_examples": 12}]


def lm_spec(model=None, probes=None, interventions=(), seeds=(0, 1, 2), steps=1, task=None) -> dict:
    return {"task": task or TASK, "model": {**MODEL, **(model or {})}, "seeds": list(seeds),
            "recipe": {"steps": steps, "lr": 0.05, "batch_size": 8, "probe_every": 2, "probe_log_points": 0,
                       "checkpoint_every": None},
            "probes": list(PROBES if probes is None else probes), "interventions": list(interventions)}


def read_sites(t: Trainer, x: torch.Tensor, names: list[str]) -> tuple[torch.Tensor, dict[str, np.ndarray]]:
    capture = Sites(read=names)
    with torch.no_grad():
        t.model.eval()
        out = t.model(x, capture)
    return out, {name: value.double().numpy() for name, value in capture.acts.items()}


@pytest.mark.parametrize("model", [{}, {"qk_layernorm": True}, {"layernorm": False}])
def test_the_attention_probes_match_numpy_on_the_models_sites(model):
    t = Trainer(Experiment.model_validate(lm_spec(model)))
    for _ in range(3):  # away from the initialization
        t.train_step()
    x = t.data.splits["test"][0][:, :10]
    names = [f"{kind}.{i}" for i in range(2) for kind in ("q", "k", "attn")]
    _, acts = read_sites(t, x, names)
    measured = t.measure()
    assert {n for n in measured if n.startswith("attention")} == {
        "attention_logits/max.0", "attention_logits/max.1", "attention_logits/max", "attention_entropy/mean.0",
        "attention_entropy/mean.1", "attention_entropy/min", "attention_entropy/uniform"}
    logits = [numpy_max_logit(acts[f"q.{i}"], acts[f"k.{i}"]) for i in range(2)]
    entropies = [numpy_entropy(acts[f"attn.{i}"]) for i in range(2)]
    for i in range(2):
        np.testing.assert_allclose(measured[f"attention_logits/max.{i}"].numpy(), logits[i], rtol=1e-5)
        np.testing.assert_allclose(measured[f"attention_entropy/mean.{i}"].numpy(), entropies[i], rtol=1e-5)
    np.testing.assert_allclose(measured["attention_logits/max"].numpy(), np.max(logits, 0), rtol=1e-5)
    np.testing.assert_allclose(measured["attention_entropy/min"].numpy(), np.min(entropies, 0), rtol=1e-5)
    np.testing.assert_allclose(measured["attention_entropy/uniform"].numpy(),
                               np.mean(np.log(np.arange(1, 7))), rtol=1e-12)


def test_the_logit_probe_reads_the_pre_softmax_scores_of_the_projections():
    """Independent of the sites: the scores from forward hooks on each block's query and key projections."""
    t = lm_trainer()
    x = t.data.splits["test"][0][:, :10]
    captured: dict[str, np.ndarray] = {}
    hooks = []
    for i, block in enumerate(t.model.blocks):
        for kind, module in (("q", block.query), ("k", block.key)):
            hooks.append(module.register_forward_hook(
                lambda m, args, out, name=f"{kind}.{i}": captured.__setitem__(name, out.detach().double().numpy())))
    try:
        with torch.no_grad():
            t.model(x)
    finally:
        for hook in hooks:
            hook.remove()
    measured = t.measure()
    for i in range(2):
        S, N, T, D = captured[f"q.{i}"].shape
        q, k = (captured[f"{kind}.{i}"].reshape(S, N, T, 2, D // 2) for kind in ("q", "k"))
        np.testing.assert_allclose(measured[f"attention_logits/max.{i}"].numpy(), numpy_max_logit(q, k), rtol=1e-5)


def test_the_probes_read_a_classifiers_final_block_in_full():
    task = {"name": "modular-arithmetic", "p": 7, "train_fraction": 0.5}
    t = Trainer(Experiment.model_validate(lm_spec(task=task, probes=PROBES[:2] + [{"name": "output_log_z"}])))
    x = t.data.splits["test"][0][:, :10]
    out, acts = read_sites(t, x, [f"{kind}.1" for kind in ("q", "k", "attn")])
    measured = t.measure()
    np.testing.assert_allclose(measured["attention_logits/max.1"].numpy(), numpy_max_logit(acts["q.1"], acts["k.1"]),
                               rtol=1e-5)
    np.testing.assert_allclose(measured["attention_entropy/mean.1"].numpy(), numpy_entropy(acts["attn.1"]), rtol=1e-5)
    full = t.model(t.data.splits["test"][0]).detach().double().numpy()
    np.testing.assert_allclose(measured["output_log_z/mean"].numpy(), logsumexp(full, -1).mean(1), rtol=1e-6)


def test_output_log_z_matches_scipy_on_the_models_outputs():
    t = lm_trainer()
    for _ in range(2):
        t.train_step()
    x = t.data.splits["test"][0][:, :12]
    with torch.no_grad():
        out = t.model(x).double().numpy()
    lse = logsumexp(out, -1)  # [S, N, T]: every position of markov-text is scored
    measured = t.measure()
    np.testing.assert_allclose(measured["output_log_z/mean"].numpy(), lse.mean((1, 2)), rtol=1e-6)
    np.testing.assert_allclose(measured["output_log_z/squared"].numpy(), (lse ** 2).mean((1, 2)), rtol=1e-6)


def test_probe_refusals_are_one_line():
    with pytest.raises(SpecError, match=r"probes\[0\].split: unknown split 'valid'"):
        Trainer(Experiment.model_validate(lm_spec(probes=[{"name": "attention_logits", "split": "valid"}])))
    mlp = {"task": {"name": "gaussian-mixture", "classes": 3, "dim": 4, "samples": 30},
           "model": {"name": "mlp", "hidden": [8]}, "recipe": {"steps": 1}, "seeds": 1}
    for probe, site in (("attention_logits", r"q\.0, k\.0"), ("attention_entropy", r"attn\.0")):
        with pytest.raises(SpecError, match=rf"probes\[0\].*{probe} reads attention sites \({site}"):
            Trainer(Experiment.model_validate({**mlp, "probes": [probe]}))
    regression = {"task": {"name": "linear-regression", "dim": 3, "samples": 20, "test_samples": 10},
                  "model": {"name": "mlp", "hidden": [4]}, "recipe": {"steps": 1}, "seeds": 1}
    with pytest.raises(SpecError, match=r"probes\[0\].*output_log_z needs a classification task"):
        Trainer(Experiment.model_validate({**regression, "probes": ["output_log_z"]}))


# ---------------------------------------------------------------- z-loss


def zloss(coefficient=None) -> dict:
    return {"name": "z-loss", **({} if coefficient is None else {"coefficient": coefficient})}


def test_the_z_loss_term_is_the_coefficient_times_the_mean_log_z_squared():
    t = lm_trainer(interventions=[zloss(0.01)])
    x, y = t.batch()
    outputs = t.model(x)
    term = t.interventions[0].loss(t, x, outputs, y, slice(0, 3))
    want = 0.01 * (logsumexp(outputs.detach().double().numpy(), -1) ** 2).mean((1, 2))
    np.testing.assert_allclose(term.detach().numpy(), want, rtol=1e-5)
    assert Experiment.model_validate(lm_spec(interventions=[zloss()])).interventions[0].coefficient == 1e-4


def test_z_loss_adds_its_gradient_to_the_task_loss():
    t = lm_trainer(interventions=[zloss(0.05)])
    x, y = t.batch()
    t.optimizer.zero_grad(set_to_none=True)
    t.accumulate_gradients(x, y)
    got = [p.grad.clone() for p in t.params]
    t.optimizer.zero_grad(set_to_none=True)
    outputs = t.model(x)
    hand = t.loss_per_seed(outputs, y) + 0.05 * (torch.logsumexp(outputs, -1) ** 2).mean((1, 2))
    hand.sum().backward()
    for p, g in zip(t.params, got):
        torch.testing.assert_close(g, p.grad)


def test_z_loss_pulls_log_z_toward_zero():
    final = {}
    for coefficient in (0.0, 0.1):
        t = Trainer(Experiment.model_validate(lm_spec(interventions=[zloss(coefficient)], steps=30)))
        t.run()
        final[coefficient] = t.measure()["output_log_z/squared"]
    assert (final[0.1] < final[0.0] / 2).all(), final


def test_an_ensemble_with_z_loss_trains_as_its_single_runs_do():
    ensemble = Trainer(Experiment.model_validate(lm_spec(interventions=[zloss(0.01)], steps=4)))
    ensemble.run()
    for k, seed in enumerate((0, 1, 2)):
        alone = Trainer(Experiment.model_validate(lm_spec(interventions=[zloss(0.01)], steps=4, seeds=(seed,))))
        alone.run()
        for p, q in zip(ensemble.params, alone.params):
            torch.testing.assert_close(p[k:k + 1], q)


def test_a_resumed_run_with_z_loss_continues_exactly():
    assert_resumes_exactly(lambda: Trainer(Experiment.model_validate(lm_spec(interventions=[zloss(0.01)], steps=5))))


@pytest.mark.parametrize("change,message", [
    ({"coefficient": -1}, "interventions[0].coefficient"),
    ({"scale": 2}, "interventions[0]"),
])
def test_bad_z_loss_is_refused_in_one_line(tmp_path, capsys, change, message):
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(lm_spec(interventions=[{"name": "z-loss", **change}], probes=[])))
    code, out, err = cli(capsys, "run", path, "--store", tmp_path / "store")
    assert code == 2, (out, err)
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def test_z_loss_refuses_a_regression_task_in_one_line(tmp_path, capsys):
    spec = {"task": {"name": "linear-regression", "dim": 3, "samples": 20, "test_samples": 10},
            "model": {"name": "mlp", "hidden": [4]}, "recipe": {"steps": 1}, "seeds": 1, "interventions": [zloss()]}
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    code, out, err = cli(capsys, "run", path, "--store", tmp_path / "store")
    assert code == 2, (out, err)
    assert "interventions[0]: z-loss" in err and "regression" in err and len(err.strip().splitlines()) == 1, err


# ---------------------------------------------------------------- the signature, on made-up curves

STEPS = [0, 100, 200, 300, 400]


def fake_arms(seeds: list[dict]) -> dict[str, ArmData]:
    """Arms low-lr, high-lr and high-lr-qk-layernorm whose seeds end at {arm: (max logit, entropy, loss)},
    the curves linear from (2, 1.88, 4.2) at step 0."""
    arms = {}
    for arm in (LOW, HIGH, QK):
        rows = []
        for seed, spec in enumerate(seeds):
            for name, start, end in zip((LOGITS, ENTROPY, LOSS), (2.0, 1.88, 4.2), spec[arm]):
                for step, value in zip(STEPS, np.linspace(start, end, len(STEPS))):
                    rows.append(("r", seed, step, name, value))
            rows += [("r", seed, step, LOG_Z, 10.0) for step in STEPS]
        record = RunRecord(f"r.{arm}", "attention-logit-growth", "experiment", "r", arm, {}, list(range(len(seeds))),
                           "finished", None, 0.0, None, "", "")
        arms[arm] = ArmData(record, pd.DataFrame(rows, columns=["run_id", "seed", "step", "name", "value"]))
    return arms


def test_the_signature_needs_growth_collapse_and_a_plateau_that_qk_layernorm_prevents():
    good = {LOW: (3.0, 1.8, 0.28), HIGH: (3e4, 1e-4, 0.6), QK: (30.0, 0.5, 0.29)}
    seeds = [dict(good) for _ in range(10)]
    verdict = AttentionLogitGrowth().check(fake_arms(seeds))
    assert verdict.ok and all(verdict.passed)
    np.testing.assert_allclose(verdict.measures["logit ratio"], 1000.0)
    seeds[1] = {**good, HIGH: (GROWN * 0.9, 1e-4, 0.6)}  # grows too little
    seeds[2] = {**good, HIGH: (1e6, 1e-4, 0.6), QK: (BOUND + 1, 0.5, 0.29)}  # qk-layernorm's logits not bounded
    seeds[3] = {**good, HIGH: (3e4, COLLAPSED * 2, 0.6)}  # entropy does not collapse
    seeds[4] = {**good, QK: (30.0, KEPT / 2, 0.29)}  # collapses with qk-layernorm too
    seeds[5] = {**good, HIGH: (3e4, 1e-4, 0.29 + PLATEAU / 2)}  # no plateau
    seeds[6] = {**good, QK: (3e4 / (RATIO * 0.9), 0.5, 0.29)}  # bounded, but not far enough below high-lr
    verdict = AttentionLogitGrowth().check(fake_arms(seeds))
    assert verdict.passed == [True, False, False, False, False, False, False, True, True, True]
    assert f"final max logit {GROWN * 0.9:.1f}" in verdict.failures[1]
    assert f"largest over the probes {BOUND + 1:.1f}" in verdict.failures[2]
    assert f"final entropy {COLLAPSED * 2:.4f}" in verdict.failures[3]
    assert f"with qk-layernorm {KEPT / 2:.4f}" in verdict.failures[4]
    assert f"final test loss {0.29 + PLATEAU / 2:.3f}, with qk-layernorm 0.290" in verdict.failures[5]
    assert f"with qk-layernorm {3e4 / (RATIO * 0.9):.1f}" in verdict.failures[6]
    assert not verdict.ok
