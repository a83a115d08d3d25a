"""The circuit probes (induction and previous-token scores, the attention
sink, the in-context score) against numpy computations of their published
definitions on hand-made attention patterns, then end to end through a tiny
trainer, where they must agree with the same references on the model's own
patterns."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from learnscope.errors import SpecError
from learnscope.models.base import Sites
from learnscope.probes.circuits import (
    head_scores,
    induction_pattern,
    position_loss,
    previous_token_pattern,
    sink_importance,
)
from learnscope.spec import Experiment
from learnscope.train.trainer import Trainer

# ---------------------------------------------------------------- numpy references


def np_induction_pattern(tokens: np.ndarray) -> np.ndarray:
    """TransformerLens's recipe: tokens equal off the diagonal, lower triangle
    (duplicates); rolled one key right, key 0 zeroed, lower triangle again."""
    T = len(tokens)
    duplicate = np.tril((tokens[None, :] == tokens[:, None]).astype(float))
    np.fill_diagonal(duplicate, 0)
    shifted = np.roll(duplicate, 1, axis=1)
    shifted[:, 0] = 0
    return np.tril(shifted)[:T, :T]


def np_previous_pattern(T: int) -> np.ndarray:
    return np.eye(T, k=-1)


def np_score(attn: np.ndarray, pattern: np.ndarray, matched: bool = False, exclude_first: bool = False,
             exclude_current: bool = False) -> float:
    """One example's head: sum(A * P) / sum(A), over the rows P scores when matched."""
    a = attn.copy()
    if exclude_first:
        a[:, 0] = 0
    if exclude_current:
        np.fill_diagonal(a, 0)
    rows = pattern.any(1) if matched else np.ones(len(a), dtype=bool)
    return float((a * pattern)[rows].sum() / a[rows].sum())


def np_alpha(attn: np.ndarray) -> np.ndarray:
    """Gu et al.'s importance: key k's attention summed over queries i >= k, over T - k."""
    T = attn.shape[-1]
    return np.array([attn[k:, k].sum() / (T - k) for k in range(T)])


def causal_softmax(scores: np.ndarray) -> np.ndarray:
    T = scores.shape[-1]
    s = np.where(np.tril(np.ones((T, T))) > 0, scores, -np.inf)
    e = np.exp(s - s.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def uniform_causal(T: int) -> np.ndarray:
    return np.tril(np.ones((T, T))) / np.arange(1, T + 1)[:, None]


def repeated(rng: np.random.Generator, T: int, vocab: int = 50) -> np.ndarray:
    """<bos> r r but its last token, as repeated-tokens gives it (bos = vocab)."""
    r = rng.permutation(vocab)[:T]
    return np.concatenate([[vocab], r, r[:-1]])


def perfect_induction(tokens: np.ndarray) -> np.ndarray:
    """Rows with an earlier copy attend to the token after it; the others to themselves."""
    T = len(tokens)
    attn = np.eye(T)
    for i in range(T):
        earlier = [j for j in range(i) if tokens[j] == tokens[i]]
        if earlier:
            attn[i] = 0
            attn[i, earlier[-1] + 1] = 1
    return attn


def t(a) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a), dtype=torch.float64)


# ---------------------------------------------------------------- hand-made patterns


def test_induction_pattern_is_transformer_lens_recipe():
    rng = np.random.default_rng(0)
    for tokens in (repeated(rng, 6), rng.integers(0, 4, size=12)):  # with and without repeats inside r
        ours = induction_pattern(torch.as_tensor(tokens)).numpy().astype(float)
        np.testing.assert_array_equal(ours, np_induction_pattern(tokens))
    np.testing.assert_array_equal(previous_token_pattern(5).numpy().astype(float), np_previous_pattern(5))


def test_a_perfect_induction_head_scores_one_on_the_rows_it_can_and_the_row_share_on_all():
    rng = np.random.default_rng(1)
    T = 8
    tokens = np.stack([repeated(rng, T) for _ in range(3)])  # [B, 2T]
    attn = np.stack([perfect_induction(x) for x in tokens])
    a = t(attn)[None, :, None]  # [S=1, B, H=1, 2T, 2T]
    pattern = induction_pattern(torch.as_tensor(tokens))[None]
    matched = head_scores(a, pattern, "matched")
    everything = head_scores(a, pattern, "all")
    torch.testing.assert_close(matched, t([[1.0]]))
    torch.testing.assert_close(everything, t([[(T - 1) / (2 * T)]]))  # T - 1 of 2T rows have an earlier copy
    reference = np.mean([np_score(attn[b], np_induction_pattern(tokens[b])) for b in range(3)])
    assert everything.item() == pytest.approx(reference, rel=1e-12)


def test_uniform_attention_scores_the_uniform_expectation():
    rng = np.random.default_rng(2)
    T = 6
    tokens = repeated(rng, T)
    n = len(tokens)
    attn = uniform_causal(n)
    pattern = np_induction_pattern(tokens)
    # uniform over i + 1 keys: each row gives (its pattern entries) / (i + 1); the rows sum to one each
    expected_all = sum(pattern[i].sum() / (i + 1) for i in range(n)) / n
    rows = [i for i in range(n) if pattern[i].any()]
    expected_matched = sum(1 / (i + 1) for i in rows) / len(rows)
    a = t(attn)[None, None, None]
    p = induction_pattern(torch.as_tensor(tokens))[None, None]
    assert head_scores(a, p, "all").item() == pytest.approx(expected_all, rel=1e-12)
    assert head_scores(a, p, "matched").item() == pytest.approx(expected_matched, rel=1e-12)
    prev = previous_token_pattern(n)
    assert head_scores(a, prev).item() == pytest.approx(sum(1 / (i + 1) for i in range(1, n)) / n, rel=1e-12)


@pytest.mark.parametrize("matched", [False, True])
@pytest.mark.parametrize("exclude", [(False, False), (True, False), (False, True), (True, True)])
def test_head_scores_match_numpy_on_random_softmax_patterns(matched, exclude):
    rng = np.random.default_rng(3)
    S, B, H, T = 2, 4, 3, 5
    tokens = np.stack([np.stack([repeated(rng, T, vocab=8) for _ in range(B)]) for _ in range(S)])  # [S, B, 2T]
    n = tokens.shape[-1]
    attn = causal_softmax(rng.normal(size=(S, B, H, n, n)) * 2)
    ours = head_scores(t(attn), induction_pattern(torch.as_tensor(tokens)), "matched" if matched else "all", *exclude)
    for s in range(S):
        for h in range(H):
            ref = np.mean([np_score(attn[s, b, h], np_induction_pattern(tokens[s, b]), matched, *exclude)
                           for b in range(B)])
            assert ours[s, h].item() == pytest.approx(ref, rel=1e-10)
    prev = head_scores(t(attn), previous_token_pattern(n), "matched" if matched else "all", *exclude)
    ref = np.mean([[np_score(attn[0, b, h], np_previous_pattern(n), matched, *exclude) for b in range(B)]
                   for h in range(H)], axis=1)
    np.testing.assert_allclose(prev[0].numpy(), ref, rtol=1e-10)


def test_a_perfect_previous_token_head_scores_one_on_matched_rows():
    n = 7
    attn = np.eye(n, k=-1)
    attn[0, 0] = 1  # the first query can only attend to itself
    a = t(attn)[None, None, None]
    assert head_scores(a, previous_token_pattern(n), "matched").item() == pytest.approx(1.0)
    assert head_scores(a, previous_token_pattern(n), "all").item() == pytest.approx((n - 1) / n)


def test_sink_importance_and_rate_on_hand_made_patterns():
    n = 6
    first = np.zeros((n, n))
    first[:, 0] = 1  # every query on the first token
    uniform = uniform_causal(n)
    identity = np.eye(n)
    rng = np.random.default_rng(4)
    noisy = causal_softmax(rng.normal(size=(n, n)))
    attn = t(np.stack([first, uniform, identity, noisy]))[None, None]  # [1, 1, H=4, n, n]
    alpha = sink_importance(attn)[0, 0]
    for h, pattern in enumerate((first, uniform, identity, noisy)):
        np.testing.assert_allclose(alpha[h].numpy(), np_alpha(pattern), rtol=1e-12)
    assert alpha[0, 0].item() == 1.0  # a pure first-token pattern: alpha_1 = 1
    assert alpha[1, 0].item() == pytest.approx(np.mean(1 / np.arange(1, n + 1)))
    assert alpha[2, 0].item() == pytest.approx(1 / n)  # only the first query (itself) attends to it


# ---------------------------------------------------------------- end to end

RECIPE = {"optimizer": "adamw", "lr": 3e-3, "steps": 12, "batch_size": 32, "probe_every": 6,
          "probe_log_points": 0}
MODEL = {"name": "transformer", "layers": 2, "d_model": 16, "heads": 2, "d_mlp": 8, "attn_only": True}
TASK = {"name": "repeated-tokens", "vocab": 20, "length": 6, "train_sequences": 128, "test_sequences": 24}
PROBES = [{"name": "induction_score", "max_examples": 16}, {"name": "previous_token_score", "queries": "matched"},
          {"name": "attention_sink", "eps": 0.3}, {"name": "in_context_score"}, "loss"]


def trainer(task=TASK, probes=PROBES, seeds=(0, 1)) -> Trainer:
    return Trainer(Experiment.model_validate({"task": task, "model": MODEL, "recipe": RECIPE, "seeds": list(seeds),
                                              "probes": probes}))


@pytest.fixture(scope="module")
def trained() -> tuple[Trainer, dict[int, dict[str, torch.Tensor]]]:
    tr = trainer()
    record: dict[int, dict[str, torch.Tensor]] = {}
    tr.run(on_probe=lambda step, metrics: record.update({step: {k: v.clone() for k, v in metrics.items()}}))
    return tr, record


def test_metric_names_are_per_layer_and_head_and_stable(trained):
    tr, record = trained
    heads = [f"L{i}H{h}" for i in range(2) for h in range(2)]
    expected = {*(f"induction_score/{x}" for x in heads), "induction_score/max", "induction_score/uniform",
                *(f"previous_token_score/{x}" for x in heads), "previous_token_score/max",
                "previous_token_score/uniform",
                "attention_sink/rate", "attention_sink/mass", "in_context_score/test", "loss/test", "loss/train"}
    assert set(record[12]) == expected
    assert sorted(record) == [0, 6, 12]
    for values in record[12].values():
        assert values.shape == (2,) and torch.isfinite(values).all()


def test_trained_probes_equal_the_references_on_the_models_own_patterns(trained):
    tr, record = trained
    x = tr.data.splits["test"][0]
    sites = Sites(read=["attn.0", "attn.1"])
    tr.model.eval()
    with torch.no_grad():
        outputs = tr.model(x, sites)
    tokens = x.numpy()
    for layer in range(2):
        attn = sites.acts[f"attn.{layer}"].double().numpy()  # [S, B, H, T, T]
        for s in range(2):
            for h in range(2):
                ind = np.mean([np_score(attn[s, b, h], np_induction_pattern(tokens[s, b])) for b in range(16)])
                prev = np.mean([np_score(attn[s, b, h], np_previous_pattern(tokens.shape[-1]), matched=True)
                                for b in range(24)])
                assert record[12][f"induction_score/L{layer}H{h}"][s].item() == pytest.approx(ind, rel=1e-5)
                assert record[12][f"previous_token_score/L{layer}H{h}"][s].item() == pytest.approx(prev, rel=1e-5)
    best = torch.stack([record[12][f"induction_score/L{i}H{h}"] for i in range(2) for h in range(2)]).amax(0)
    torch.testing.assert_close(record[12]["induction_score/max"], best)
    T = tokens.shape[-1]
    for s in range(2):  # even causal attention, scored on the same examples
        uniform = np.mean([np_score(uniform_causal(T), np_induction_pattern(tokens[s, b])) for b in range(16)])
        assert record[12]["induction_score/uniform"][s].item() == pytest.approx(uniform, rel=1e-9)
        assert record[12]["previous_token_score/uniform"][s].item() == pytest.approx(
            np_score(uniform_causal(T), np_previous_pattern(T), matched=True), rel=1e-9)
    alphas = np.stack([[[[np_alpha(sites.acts[f"attn.{i}"][s, b, h].double().numpy())[0] for h in range(2)]
                         for i in range(2)] for b in range(24)] for s in range(2)])  # [S, B, L, H]
    np.testing.assert_allclose(record[12]["attention_sink/rate"].numpy(), (alphas > 0.3).mean((1, 2, 3)))
    np.testing.assert_allclose(record[12]["attention_sink/mass"].numpy(), alphas.mean((1, 2, 3)), rtol=1e-5)
    # in-context score: cross-entropy at the last position minus at position 1, numpy log-softmax
    logits = outputs.double().numpy()
    targets = tr.data.splits["test"][1].numpy()
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    ce = -np.take_along_axis(logp, targets[..., None], -1)[..., 0]  # [S, B, T]
    np.testing.assert_allclose(record[12]["in_context_score/test"].numpy(), ce[:, :, -1].mean(1) - ce[:, :, 1].mean(1),
                               rtol=1e-4, atol=1e-5)


def test_position_loss_leaves_out_unscored_examples():
    losses = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]])  # [S=1, B=3, T=2]
    scored = torch.tensor([[[True, True], [False, True], [True, False]]])
    torch.testing.assert_close(position_loss(losses, scored, 0), torch.tensor([3.0]))  # (1 + 5) / 2
    torch.testing.assert_close(position_loss(losses, scored, -1), torch.tensor([3.0]))  # (2 + 4) / 2
    torch.testing.assert_close(position_loss(losses, scored, [0, 1]), torch.tensor([3.0]))  # (1 + 2 + 4 + 5) / 4
    losses[0, 1, 1] = 8.0
    torch.testing.assert_close(position_loss(losses, scored, [0, 1]), torch.tensor([4.0]))  # pooled, not per position


def test_in_context_score_over_position_ranges():
    """early/late as ranges [start, stop): the scored losses of the range pooled, against numpy."""
    tr = trainer(TASK, [{"name": "in_context_score", "early": [1, 4], "late": [-4, -1]}])
    record = {}
    tr.run(on_probe=lambda step, metrics: record.update({step: metrics}))
    with torch.no_grad():
        logits = tr.model(tr.data.splits["test"][0]).double().numpy()
    targets = tr.data.splits["test"][1].numpy()
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    ce = -np.take_along_axis(logp, targets[..., None], -1)[..., 0]  # [S, B, T]
    T = ce.shape[-1]
    expected = ce[:, :, T - 4 : T - 1].mean((1, 2)) - ce[:, :, 1:4].mean((1, 2))
    np.testing.assert_allclose(record[max(record)]["in_context_score/test"].numpy(), expected, rtol=1e-4, atol=1e-5)


def test_accuracy_on_bursty_icl_splits_and_attention_probes_on_vector_inputs():
    task = {"name": "bursty-icl", "classes": 16, "labels": 4, "dim": 8, "context": 4, "burstiness": 2,
            "train_sequences": 64, "test_sequences": 16}
    probes = [{"name": "accuracy", "splits": ["in_context", "in_weights"]}, "previous_token_score", "attention_sink"]
    tr = trainer(task, probes)
    metrics = tr.measure()
    assert {"accuracy/in_context", "accuracy/in_weights", "attention_sink/rate", "previous_token_score/max"} <= set(
        metrics)
    tr.train_step()
    assert tr.model.embed.weight.shape == (2, 8 + 4, 16)  # the linear embedding of items and one-hot labels


BURSTY = {"name": "bursty-icl", "classes": 16, "labels": 4, "dim": 8, "context": 4, "burstiness": 2,
          "train_sequences": 64, "test_sequences": 16}


def test_bursty_vectors_carry_the_identities_their_token_version_has():
    """Each position's identity is the token `items: tokens` puts there (same class
    draws), and the one-hot label of a label position is its identity's label."""
    from learnscope import registry

    fields = {k: v for k, v in BURSTY.items() if k != "name"}
    vectors = registry.tasks.get("bursty-icl")(**fields).build(3)
    tokens = registry.tasks.get("bursty-icl")(**fields, items="tokens").build(3)
    assert vectors.identities is not None
    torch.testing.assert_close(vectors.identities, tokens.inputs)
    first_label = 16 + 16  # classes + novel classes
    labels = vectors.inputs[:, 1::2, 8:].argmax(-1)
    torch.testing.assert_close(labels + first_label, vectors.identities[:, 1::2])
    # items of one class are noisy copies of one mean: nearer each other than other classes' items
    items, ids = vectors.inputs[:, 0::2, :8].reshape(-1, 8), vectors.identities[:, 0::2].reshape(-1)
    same = ids[:, None] == ids[None, :]
    distance = torch.cdist(items, items)
    off = ~torch.eye(len(ids), dtype=torch.bool)
    assert distance[same & off].max() < distance[~same].min()


def test_induction_score_on_vector_sequences_reads_the_identities_and_rows():
    probes = [{"name": "induction_score", "queries": "matched", "split": "in_context"},
              {"name": "previous_token_score", "rows": [1, -2]}]
    tr = trainer(BURSTY, probes)
    record = {}
    tr.run(on_probe=lambda step, metrics: record.update({step: metrics}))
    sites = Sites(read=["attn.0", "attn.1"])
    tr.model.eval()
    with torch.no_grad():
        tr.model(tr.data.splits["in_context"][0], sites)
    ids = tr.data.identities("in_context").numpy()
    T = ids.shape[-1]
    for layer in range(2):
        attn = sites.acts[f"attn.{layer}"].double().numpy()
        for s in range(2):
            for h in range(2):
                scores = [np_score(attn[s, b, h], np_induction_pattern(ids[s, b]), matched=True)
                          for b in range(16) if np_induction_pattern(ids[s, b]).any()]
                assert record[12][f"induction_score/L{layer}H{h}"][s].item() == pytest.approx(np.mean(scores), rel=1e-5)
    # rows: only query positions 1 and T - 2 count (all rows of those in the denominator)
    with torch.no_grad():
        tr.model(tr.data.splits["test"][0], sites)
    attn = sites.acts["attn.1"].double().numpy()
    kept = [1, T - 2]
    expected = np.mean([np_score(attn[0, b, 1][kept], np_previous_pattern(T)[kept]) for b in range(16)])
    assert record[12]["previous_token_score/L1H1"][0].item() == pytest.approx(expected, rel=1e-5)
    assert record[12]["previous_token_score/uniform"][0].item() == pytest.approx(
        np_score(uniform_causal(T)[kept], np_previous_pattern(T)[kept]), rel=1e-9)


@pytest.mark.parametrize("probe, task, match", [
    ({"name": "induction_score", "rows": [99]}, TASK, "outside"),
    ({"name": "induction_score", "rows": [1, -11]}, TASK, "twice"),
    ({"name": "in_context_score", "late": 40}, TASK, "outside"),
    ({"name": "in_context_score", "early": [5, 2]}, TASK, "holds no position"),
    ({"name": "in_context_score", "late": [0, 99]}, TASK, "outside"),
    ({"name": "attention_sink", "split": "val"}, TASK, "unknown split"),
])
def test_bad_circuit_probes_are_one_error_line(probe, task, match):
    with pytest.raises(SpecError, match=match):
        trainer(task, [probe])


def test_induction_score_refuses_vectors_without_identities():
    experiment = Experiment.model_validate({"task": {"name": "gaussian-mixture", "samples": 16, "test_samples": 4},
                                            "model": {"name": "mlp", "hidden": [8]}, "recipe": RECIPE, "seeds": [0],
                                            "probes": ["induction_score"]})
    with pytest.raises(SpecError, match="identities"):
        Trainer(experiment)


def test_attention_probes_refuse_a_model_without_attention_sites():
    experiment = Experiment.model_validate({
        "task": {"name": "bursty-icl", "classes": 16, "labels": 4, "dim": 8, "context": 4, "burstiness": 2,
                 "train_sequences": 8, "test_sequences": 4},
        "model": {"name": "mlp", "hidden": [8]}, "recipe": RECIPE, "seeds": [0], "probes": ["attention_sink"]})
    with pytest.raises(SpecError, match="attention patterns"):
        Trainer(experiment)


@pytest.mark.parametrize("mode", ["zero", "mean"])
def test_head_ablation_equals_the_model_run_with_that_head_replaced_by_hand(mode):
    task = {**BURSTY, "test_sequences": 40}
    probes = [{"name": "head_ablation", "split": "in_context", "mode": mode, "max_examples": 24}]
    tr = trainer(task, probes)
    record = {}
    tr.run(on_probe=lambda step, metrics: record.update({step: metrics}))
    x, y = tr.data.splits["in_context"][0][:, :24], tr.data.splits["in_context"][1][:, :24]
    tr.model.eval()
    with torch.no_grad():
        plain = Sites(read=["head_out.0", "head_out.1"])
        tr.model(x, plain)
        for layer in range(2):
            for h in range(2):
                def replace(value, layer=layer, h=h):
                    value = value.clone()  # [S, B, T, H, d]
                    value[:, :, :, h] = 0 if mode == "zero" else plain.acts[f"head_out.{layer}"][:, :, :, h].mean(1, keepdim=True)
                    return value

                accuracy = (tr.model(x, Sites(edits={f"head_out.{layer}": replace})).argmax(-1) == y).double().mean(1)
                torch.testing.assert_close(record[12][f"head_ablation/L{layer}H{h}"].double(), accuracy)
    assert sorted(record[12]) == [f"head_ablation/L{i}H{h}" for i in range(2) for h in range(2)]
    with torch.no_grad():
        unablated = (tr.model(x).argmax(-1) == y).double().mean(1)
    assert any(not torch.equal(record[12][name].double(), unablated) for name in record[12])  # the edits bite


def test_head_ablation_refuses_a_model_without_heads():
    experiment = Experiment.model_validate({"task": BURSTY, "model": {"name": "mlp", "hidden": [8]}, "recipe": RECIPE,
                                            "seeds": [0], "probes": ["head_ablation"]})
    with pytest.raises(SpecError, match="attention"):
        Trainer(experiment)


def test_the_report_draws_the_final_checkpoints_mean_attention_patterns(tmp_path):
    from learnscope.report.attention import attention_figures, mean_patterns
    from learnscope.runner import run_experiment
    from learnscope.store import Store

    spec = {"task": TASK, "model": MODEL, "recipe": RECIPE, "seeds": [0, 1],
            "probes": [{"name": "previous_token_score"}]}
    tr = Trainer(Experiment.model_validate(spec))
    run = run_experiment(tr.experiment, Store(tmp_path / "store"), trainer=tr)
    data = run.arm_data()[""]
    step, patterns = mean_patterns(run.store, data, "test")
    sites = Sites(read=["attn.0", "attn.1"])
    tr.model.eval()
    with torch.no_grad():
        tr.model(tr.data.splits["test"][0], sites)
    expected = np.stack([sites.acts[f"attn.{i}"].double().mean((0, 1)).numpy() for i in range(2)])
    assert step == 12 and patterns.shape == (2, 2, 12, 12)
    np.testing.assert_allclose(patterns, expected, rtol=1e-6)
    assert len(attention_figures(run.store, {"arm": data})) == 1
    plain = run_experiment(Experiment.model_validate({**spec, "probes": ["loss"]}), run.store)
    assert attention_figures(plain.store, plain.arm_data()) == []  # no attention probed, none drawn


def test_a_label_lets_one_probe_run_twice_with_other_parameters():
    probes = [{"name": "attention_sink"}, {"name": "attention_sink", "position": 1, "label": "k1"},
              {"name": "induction_score", "queries": "matched", "label": "matched"}, "induction_score"]
    tr = trainer(TASK, probes)
    record = {}
    tr.run(on_probe=lambda step, metrics: record.update({step: metrics}))
    final = record[12]
    assert {"attention_sink/rate", "attention_sink@k1/rate", "attention_sink@k1/mass",
            "induction_score@matched/max", "induction_score/max"} <= set(final)
    sites = Sites(read=["attn.0", "attn.1"])
    tr.model.eval()
    with torch.no_grad():
        tr.model(tr.data.splits["test"][0], sites)
    alphas = np.stack([[[[np_alpha(sites.acts[f"attn.{i}"][s, b, h].double().numpy())[1] for h in range(2)]
                         for i in range(2)] for b in range(24)] for s in range(2)])  # position 1
    np.testing.assert_allclose(final["attention_sink@k1/mass"].numpy(), alphas.mean((1, 2, 3)), rtol=1e-5)
    assert not torch.equal(final["induction_score@matched/max"], final["induction_score/max"])


def test_the_same_probe_twice_without_a_label_is_one_error_line():
    with pytest.raises(SpecError, match="already measured by probes\\[0\\]"):
        trainer(TASK, [{"name": "attention_sink"}, {"name": "attention_sink", "position": 1}])
    with pytest.raises(SpecError, match="label"):
        trainer(TASK, [{"name": "attention_sink", "label": "a/b"}])
