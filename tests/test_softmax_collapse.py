"""The `softmax_collapse` probe against an independent numpy float32
computation of the authors' definition: with each row's maximum subtracted,
the float32 sum of exp over the classes equals 1 exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from learnscope.errors import SpecError
from learnscope.losses import IGNORE
from learnscope.probes.numerics import SoftmaxCollapse, softmax_collapsed
from learnscope.spec import Experiment
from learnscope.tasks.base import TaskInfo
from learnscope.train.trainer import Trainer


def numpy_collapsed(logits: np.ndarray) -> np.ndarray:
    x = logits.astype(np.float32)
    terms = np.exp(x - x.max(-1, keepdims=True), dtype=np.float32)
    return terms.sum(-1, dtype=np.float32) == np.float32(1)


def rows_with_gap(gaps, classes: int = 10, seed: int = 0) -> np.ndarray:
    """One row per gap: one logit leads the next largest by exactly `gap`."""
    rng = np.random.default_rng(seed)
    rows = []
    for gap in gaps:
        top = rng.normal(0, 10)
        rest = top - gap - rng.uniform(0, 3, classes - 1)
        rest[0] = top - gap
        row = np.concatenate([[top], rest])
        rows.append(rng.permutation(row))
    return np.array(rows, dtype=np.float32)


def test_hand_made_logits():
    logits = torch.tensor([[200.0, 0.0, -1.0],  # gap 200: every other term underflows to 0
                           [5.0, 0.0, 0.0],  # gap 5: e^-5 ≈ 0.007 stays in the sum
                           [30.0, 0.0, 1.0],  # gap 29: e^-29 ≈ 2.5e-13, below float32's rounding of 1
                           [3.0, 3.0, -100.0]])  # a tie: the sum is 2
    assert softmax_collapsed(logits.unsqueeze(0)).tolist() == [[True, False, True, False]]


@pytest.mark.parametrize("classes", [3, 10, 97])
def test_matches_numpy_float32(classes):
    gaps = [0, 1, 5, 10, 12, 25, 40, 88, 104, 200, 1e4] * 4  # away from the borderline ≈ 16–17
    logits = np.stack([rows_with_gap(gaps, classes, seed) for seed in range(3)])  # [S, N, C]
    got = softmax_collapsed(torch.from_numpy(logits))
    want = numpy_collapsed(logits)
    assert got.tolist() == want.tolist()
    assert want.any() and not want.all()  # both outcomes occur
    # float64 logits are measured in float32, as the authors cast them
    assert softmax_collapsed(torch.from_numpy(logits).double()).tolist() == want.tolist()


# ---------------------------------------------------------------- the probe

TASK = {"name": "gaussian-mixture", "classes": 4, "dim": 6, "samples": 64, "test_samples": 24}


def trainer(scale: float, probe="softmax_collapse", seeds=(0, 1, 2)) -> Trainer:
    return Trainer(Experiment.model_validate({
        "task": TASK, "model": {"name": "mlp", "hidden": [16], "output_scale": scale}, "seeds": list(seeds),
        "recipe": {"optimizer": "sgd", "lr": 0.01, "steps": 1}, "probes": [probe]}))


@pytest.mark.parametrize("scale", [1.0, 30.0, 1e4])
def test_probe_matches_numpy_on_the_models_outputs(scale):
    t = trainer(scale)
    with torch.no_grad():
        outputs = t.model(t.data.splits["train"][0]).numpy()
    measured = t.measure()
    assert list(measured) == ["softmax_collapse/train"]
    np.testing.assert_array_equal(measured["softmax_collapse/train"].numpy(),
                                  numpy_collapsed(outputs).mean(1).astype(np.float32))
    if scale == 1.0:  # small logits: nothing collapses; huge ones: almost everything
        assert (measured["softmax_collapse/train"] == 0).all()
    if scale == 1e4:
        assert (measured["softmax_collapse/train"] > 0.9).all()


def test_split_and_max_examples():
    t = trainer(30.0, {"name": "softmax_collapse", "split": "test", "max_examples": 10})
    with torch.no_grad():
        outputs = t.model(t.data.splits["test"][0][:, :10]).numpy()
    measured = t.measure()["softmax_collapse/test"].numpy()
    np.testing.assert_array_equal(measured, numpy_collapsed(outputs).mean(1).astype(np.float32))
    assert len(set(numpy_collapsed(outputs).mean(1))) > 1  # seeds differ: the values are per seed


def test_a_sequence_counts_its_scored_positions():
    class Context:  # what measure reads of a ProbeContext
        def __init__(self, outputs, targets, info):
            self._outputs, self._targets, self.info = outputs, targets, info

        def outputs(self, split, max_examples=None):
            return self._outputs[:, :max_examples]

        def targets(self, split):
            return self._targets

    info = TaskInfo(input_kind="tokens", input_shape=(3,), output_dim=3, loss="cross_entropy", splits=("train",),
                    vocab_size=3, sequence=True)
    outputs = torch.tensor([[[[200.0, 0, 0], [5.0, 0, 0], [200.0, 0, 0]]]])  # [S=1, B=1, T=3, C=3]
    targets = torch.tensor([[[0, 0, IGNORE]]])  # the third (collapsed) position is not scored
    share = SoftmaxCollapse().measure(Context(outputs, targets, info))["softmax_collapse/train"]
    assert share.tolist() == [0.5]


def test_refusals_are_one_line():
    with pytest.raises(SpecError, match=r"probes\[0\].split: unknown split 'valid'"):
        trainer(1.0, {"name": "softmax_collapse", "split": "valid"})
    with pytest.raises(SpecError, match=r"probes\[0\].*needs a classification task"):
        Trainer(Experiment.model_validate({
            "task": {"name": "teacher-student", "input_dim": 5, "samples": 40}, "model": {"name": "mlp", "hidden": [8]},
            "recipe": {"steps": 1}, "probes": ["softmax_collapse"], "seeds": 1}))


def test_a_seed_past_event_at_gets_one_softmax_collapse_event(tmp_path):
    """Through the runner: the first probe step at which a seed's share reaches `event_at` records one
    `softmax-collapse` event for that seed, never again; a seed below it gets none; unset, no events."""
    from learnscope.runner import run_experiment

    spec = {"task": TASK, "model": {"name": "mlp", "hidden": [16], "output_scale": 30.0}, "seeds": [0, 1, 2],
            "recipe": {"optimizer": "sgd", "lr": 0.1, "steps": 20, "probe_every": 5, "probe_log_points": 0}}
    at = 0.8
    run = run_experiment(Experiment.model_validate({**spec, "probes": [{"name": "softmax_collapse", "event_at": at}]}),
                         store=tmp_path / "store")
    steps, shares = run.arm_data()[""].curve("softmax_collapse/train")
    events = run.store.events(run.id, "softmax-collapse")
    expected = {seed: int(steps[np.argmax(row >= at)]) for seed, row in zip(run.record.seeds, shares) if (row >= at).any()}
    assert 0 < len(expected) < 3  # this setting makes some seeds cross and not others
    crossings = ((shares[:, 1:] >= at) & (shares[:, :-1] < at)).sum(1) + (shares[:, 0] >= at)
    assert crossings.max() >= 2  # and a seed fall back below and cross again: still one event
    assert {e["seed"]: e["step"] for e in events} == expected and len(events) == len(expected)
    assert all(e["detail"]["share"] >= at for e in events)
    quiet = run_experiment(Experiment.model_validate({**spec, "probes": [{"name": "softmax_collapse", "event_at": None}]}),
                           store=tmp_path / "store")
    assert quiet.store.events(quiet.id, "softmax-collapse") == []
