"""The tasks of in-context learning and circuits: bursty-icl (Reddy's
generator, as vectors and as tokens), repeated-tokens and markov-text:
their structure checked sequence by sequence, determinism per seed, and the
transformer reading vector sequences."""

from __future__ import annotations

import math

import pytest
import torch
from pydantic import ValidationError

from learnscope.spec import Experiment
from learnscope.tasks.bursty_icl import BurstyICL
from learnscope.tasks.markov_text import MarkovText
from learnscope.tasks.repeated_tokens import RepeatedTokens
from learnscope.train.trainer import Trainer

SMALL = {"classes": 32, "labels": 8, "dim": 16, "context": 8, "burstiness": 4, "train_sequences": 256,
         "test_sequences": 128}


def decode(task: BurstyICL, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Items [n, N + 1, D], context labels [n, N] of vector sequences; checks the layout."""
    D = task.dim
    assert torch.all(x[:, 0::2, D:] == 0) and torch.all(x[:, 1::2, :D] == 0)
    onehot = x[:, 1::2, D:]
    assert torch.all(onehot.sum(-1) == 1)
    return x[:, 0::2, :D], onehot.argmax(-1), onehot


def nearest_class(items: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
    return torch.cdist(items, means).argmin(-1)


def class_means(task: BurstyICL, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The generator's class labels and means, drawn as build() draws them."""
    from learnscope.seeding import generator

    gen = generator(seed, "data", "classes")
    labels = torch.randperm(task.classes, generator=gen) % task.labels
    means = torch.randn(task.classes + task.novel, task.dim, generator=gen) / math.sqrt(task.dim)
    return labels, means


def test_bursty_icl_defaults_and_shapes():
    task = BurstyICL()
    assert (task.context, task.dim, task.labels, task.eps, task.classes) == (8, 63, 32, 0.1, 512)
    info = task.info()
    assert info.input_kind == "vector" and info.input_shape == (17, 63 + 32) and info.output_dim == 32
    assert info.splits == ("train", "test", "in_weights", "in_context") and not info.sequence


def test_bursty_sequences_repeat_their_classes_and_hold_the_query():
    task = BurstyICL(**SMALL, eps=0.0)  # no noise: every item is its class mean exactly
    data = task.build(3)
    labels, means = class_means(task, 3)
    for split in ("train", "test"):
        idx = data.splits[split]
        items, context_labels, _ = decode(task, data.inputs[idx])
        classes = nearest_class(items, means[: task.classes])
        assert torch.allclose(items, means[classes], atol=1e-6)
        for row, q, y in zip(classes, classes[:, -1], data.targets[idx]):
            counts = torch.bincount(row[:-1], minlength=task.classes)
            assert set(counts[counts > 0].tolist()) == {4}  # N/B classes, B times each
            assert counts[q] > 0 and y == labels[q]  # the query's class is in context
        assert torch.equal(context_labels, labels[classes[:, :-1]])


def test_in_weights_contexts_are_iid_and_in_context_classes_are_novel():
    task = BurstyICL(**SMALL, eps=0.0, alpha=0.0)
    data = task.build(0)
    labels, means = class_means(task, 0)
    items, _, _ = decode(task, data.inputs[data.splits["in_weights"]])
    classes = nearest_class(items, means[: task.classes])
    assert torch.equal(data.targets[data.splits["in_weights"]], labels[classes[:, -1]])
    present = (classes[:, :-1] == classes[:, -1:]).any(1).float().mean()
    assert present < 0.5  # N = 8 of 32 uniform classes: the query's class is usually absent
    items, context_labels, _ = decode(task, data.inputs[data.splits["in_context"]])
    novel = nearest_class(items, means)
    assert torch.all(novel >= task.classes)  # never a training class
    for row, ctx_y, y in zip(novel, context_labels, data.targets[data.splits["in_context"]]):
        pairs = {(c, lab) for c, lab in zip(row[:-1].tolist(), ctx_y.tolist())}
        assert len(pairs) == 2 and len({lab for _, lab in pairs}) == 2  # 2 classes, distinct labels
        assert (row[-1].item(), y.item()) in pairs  # the query's label is read off the context


def test_zipf_class_frequencies_and_iid_sequences():
    task = BurstyICL(**{**SMALL, "train_sequences": 4000, "burstiness": 0}, eps=0.0, alpha=1.0)
    data = task.build(1)
    labels, means = class_means(task, 1)
    items, _, _ = decode(task, data.inputs[data.splits["train"]])
    classes = nearest_class(items, means[: task.classes]).flatten()
    freq = torch.bincount(classes, minlength=task.classes).double() / len(classes)
    zipf = 1 / torch.arange(1, task.classes + 1, dtype=torch.float64)
    zipf /= zipf.sum()
    assert (freq - zipf).abs().max() < 0.01


def test_items_carry_the_within_class_noise():
    task = BurstyICL(**SMALL, eps=0.5)
    data = task.build(0)
    _, means = class_means(task, 0)
    items, _, _ = decode(task, data.inputs[data.splits["train"]])
    classes = nearest_class(items, means[: task.classes])
    residual = items * math.sqrt(1 + 0.25) - means[classes]  # eps * eta, eta ~ N(0, I/D)
    assert residual.pow(2).sum(-1).mean().item() == pytest.approx(0.25, rel=0.1)


def test_token_items():
    task = BurstyICL(**SMALL, items="tokens", novel_classes=16)
    info = task.info()
    assert info.input_kind == "tokens" and info.vocab_size == 32 + 16 + 8 and info.input_shape == (17,)
    data = task.build(0)
    x, y = data.inputs, data.targets
    assert torch.all(x[:, 1::2] >= 48)  # label tokens after the items
    icl = x[data.splits["in_context"]]
    assert torch.all((icl[:, 0::2] >= 32) & (icl[:, 0::2] < 48))  # novel items only
    for row, target in zip(icl, y[data.splits["in_context"]]):
        at = (row[0:-1:2] == row[-1]).nonzero()[0, 0]
        assert row[2 * at + 1] - 48 == target


@pytest.mark.parametrize("task", [BurstyICL(**SMALL), BurstyICL(**SMALL, items="tokens"),
                                  RepeatedTokens(), MarkovText()], ids=["bursty", "bursty-tokens", "repeated",
                                                                        "markov"])
def test_deterministic_per_seed(task):
    a, b, c = task.build(5), task.build(5), task.build(6)
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.targets, b.targets)
    assert not torch.equal(a.inputs, c.inputs)


@pytest.mark.parametrize("fields, match", [({"classes": 30}, "multiple"), ({"burstiness": 3}, "divide"),
                                            ({"in_context_burstiness": 1, "labels": 4, "classes": 32}, "distinct")])
def test_bursty_icl_refuses_inconsistent_sizes(fields, match):
    with pytest.raises(ValidationError, match=match):
        BurstyICL(**{**SMALL, **fields})


def test_repeated_tokens_are_r_then_r():
    task = RepeatedTokens(vocab=12, length=5, train_sequences=10, test_sequences=3)
    data = task.build(0)
    info = task.info()
    assert info.sequence and info.vocab_size == 13 and info.input_shape == (10,)
    full = torch.cat([data.inputs, data.targets[:, -1:]], dim=1)  # <bos> r r
    assert torch.all(full[:, 0] == 12)
    assert torch.equal(full[:, 1:6], full[:, 6:])
    assert all(len(set(r.tolist())) == 5 for r in full[:, 1:6])
    assert torch.equal(data.targets[:, :-1], data.inputs[:, 1:])
    no_bos = RepeatedTokens(vocab=3, length=5, distinct=False, bos=False).build(0)
    assert no_bos.inputs.shape[1] == 9
    with pytest.raises(ValidationError, match="distinct"):
        RepeatedTokens(vocab=3, length=5)


def test_repeated_tokens_with_varying_copies():
    """min_length: a train sequence repeats the first m tokens of r (m in [min_length, length], and
    more than one m occurs), then fresh tokens; the test sequences repeat the whole of r."""
    task = RepeatedTokens(vocab=30, length=6, min_length=2, train_sequences=200, test_sequences=5)
    data = task.build(3)
    full = torch.cat([data.inputs, data.targets[:, -1:]], dim=1)[:, 1:]  # r[:m] r[:m] fresh, without <bos>
    lengths = []
    for row in full[:200].tolist():
        m = next(m for m in range(6, 1, -1) if row[:m] == row[m : 2 * m] and len(set(row[:m])) == m)
        lengths.append(m)
    assert min(lengths) >= 2 and len(set(lengths)) > 2
    assert torch.equal(full[200:, :6], full[200:, 6:])
    plain = RepeatedTokens(vocab=30, length=6, train_sequences=200, test_sequences=5).build(3)
    assert torch.equal(plain.inputs[:, 1:3], full[:, :2])  # the same r (its first 2 always lead): draws come after it
    with pytest.raises(ValidationError, match="min_length"):
        RepeatedTokens(vocab=30, length=6, min_length=7)


def test_markov_text_follows_its_chain():
    task = MarkovText(vocab=16, length=12, branching=2, train_sequences=500, test_sequences=10)
    data = task.build(0)
    matrix = task.transitions(0)
    assert torch.allclose(matrix.sum(1), torch.ones(16, dtype=torch.float64))
    assert torch.all((matrix > 0).sum(1) == 2)
    assert torch.all(data.inputs[:, 0] == 16)  # <bos>
    pairs = torch.stack([data.inputs[:, 1:], data.targets[:, 1:]], -1).reshape(-1, 2)
    assert torch.all(matrix[pairs[:, 0], pairs[:, 1]] > 0)  # every step a transition of the chain
    assert torch.equal(MarkovText(chain_seed=4).transitions(0), MarkovText(chain_seed=4).transitions(9))


def test_the_transformer_reads_vector_sequences_and_an_mlp_reads_them_flat():
    for model in ({"name": "transformer", "layers": 2, "d_model": 16, "heads": 2, "d_mlp": 8},
                  {"name": "mlp", "hidden": [8]}):
        tr = Trainer(Experiment.model_validate({
            "task": {"name": "bursty-icl", **SMALL, "train_sequences": 32, "test_sequences": 8},
            "model": model, "recipe": {"steps": 2, "batch_size": 8, "probe_every": 1, "probe_log_points": 0},
            "seeds": [0, 1], "probes": [{"name": "accuracy", "splits": ["in_context"]}]}))
        tr.train_step()
        with torch.no_grad():
            out = tr.model(tr.train_x[:, :3])
        assert out.shape == (2, 3, 8)


def test_distinct_draws_are_successive_sampling_without_an_n_by_k_matrix():
    """draw_distinct against torch.multinomial without replacement (the successive sampling it
    replaces) on Zipf weights: the same distribution of ordered draws, by a chi-square test; no
    row repeats a class; and a large build stays cheap (no n x K weights)."""
    from scipy.stats import chisquare

    from learnscope.tasks.bursty_icl import draw_distinct

    weights = torch.arange(1, 6, dtype=torch.float64).pow(-1.0)
    n = 60_000
    ours = draw_distinct(weights, n, 2, torch.Generator().manual_seed(0))
    reference = torch.multinomial(weights.expand(n, -1).contiguous(), 2, generator=torch.Generator().manual_seed(1))
    assert (ours[:, 0] != ours[:, 1]).all()
    pairs = lambda d: torch.bincount(d[:, 0] * 5 + d[:, 1], minlength=25).numpy()  # noqa: E731
    observed, expected = pairs(ours), pairs(reference)
    keep = expected > 0  # the diagonal: a class twice, never drawn
    assert not observed[~keep].any()
    assert chisquare(observed[keep], expected[keep] * observed.sum() / expected[keep].sum()).pvalue > 1e-3
    big = BurstyICL(classes=4096, labels=32, items="tokens", train_sequences=100_000, test_sequences=64)
    assert big.build(0).inputs.shape == (100_000 + 3 * 64, 17)


def test_the_bursty_example_spec_is_the_phenomenons_bursty_arm():
    """examples/bursty-icl.yaml (the burstiness x Zipf sweep's spec) trains what the
    phenomenon's bursty arm trains: same task, model and optimizer."""
    from pathlib import Path

    import yaml

    from learnscope.catalog.bursty_icl import icl_experiment

    example = Experiment.model_validate(yaml.safe_load(
        (Path(__file__).parents[1] / "examples" / "bursty-icl.yaml").read_text()))
    arm = icl_experiment(quick=True)
    assert example.task == arm.task and example.model == arm.model
    same = ("optimizer", "lr", "weight_decay", "batch_size", "steps")
    assert {k: getattr(example.recipe, k) for k in same} == {k: getattr(arm.recipe, k) for k in same}
