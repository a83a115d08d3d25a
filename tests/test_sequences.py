"""Sequence tasks (a next-token target at every position): per-example
losses and accuracies against a direct numpy computation, and the
transformer's per-position outputs causal and equal to the classifier's
last-position output."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from learnscope import registry
from learnscope.errors import SpecError
from learnscope.losses import IGNORE, example_accuracy, example_losses
from learnscope.spec import Experiment
from learnscope.tasks.base import TaskInfo
from learnscope.train.trainer import Trainer


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def test_sequence_losses_and_accuracies_match_numpy():
    info = registry.tasks.get("test-token-strings")().info()
    rng = np.random.default_rng(0)
    S, B, T, V = 2, 3, 5, 11
    outputs = rng.normal(size=(S, B, T, V))
    targets = rng.integers(0, V, size=(S, B, T))
    targets[:, :, :2] = IGNORE
    targets[1, 2, 3] = IGNORE  # examples with different numbers of scored positions
    losses = example_losses(info, torch.tensor(outputs), torch.tensor(targets)).numpy()
    accuracy = example_accuracy(info, torch.tensor(outputs), torch.tensor(targets)).numpy()
    lp = log_softmax(outputs)
    for s in range(S):
        for b in range(B):
            scored = [t for t in range(T) if targets[s, b, t] != IGNORE]
            assert losses[s, b] == pytest.approx(-np.mean([lp[s, b, t, targets[s, b, t]] for t in scored]))
            assert accuracy[s, b] == pytest.approx(np.mean([outputs[s, b, t].argmax() == targets[s, b, t] for t in scored]))


def test_classification_losses_match_numpy_at_every_width():
    for classes in (3, 10, 16, 40):  # below 16 the loss pads the logits with -inf
        info = TaskInfo("vector", (4,), classes, "cross_entropy", ("train",))
        rng = np.random.default_rng(classes)
        outputs, targets = rng.normal(size=(2, 6, classes)), rng.integers(0, classes, size=(2, 6))
        losses = example_losses(info, torch.tensor(outputs), torch.tensor(targets)).numpy()
        expected = -np.take_along_axis(log_softmax(outputs), targets[..., None], -1)[..., 0]
        np.testing.assert_allclose(losses, expected, rtol=1e-12)


def sequence_trainer(seeds=(0, 1)) -> Trainer:
    return Trainer(Experiment.model_validate({
        "task": {"name": "test-token-strings"}, "seeds": list(seeds),
        "model": {"name": "transformer", "layers": 2, "d_model": 16, "heads": 2, "d_mlp": 24},
        "recipe": {"optimizer": "adamw", "lr": 1e-2, "steps": 30, "probe_every": 10, "probe_log_points": 0},
        "probes": ["loss", "accuracy"],
    }))


def test_sequence_outputs_are_causal_and_per_position():
    trainer = sequence_trainer()
    x, _ = trainer.data.splits["train"]
    outputs = trainer.model(x)
    assert outputs.shape == (*x.shape, 11)
    changed = x.clone()
    changed[:, :, 5:] = (changed[:, :, 5:] + 1) % 11  # change the future
    again = trainer.model(changed)
    torch.testing.assert_close(again[:, :, :5], outputs[:, :, :5])  # the past does not see it
    assert not torch.allclose(again[:, :, 5:], outputs[:, :, 5:])


def test_sequence_model_trains_and_equals_single_runs():
    ensemble = sequence_trainer((0, 1))
    ensemble.run()
    first = ensemble.last_loss.clone()
    single = sequence_trainer((1,))
    single.run()
    torch.testing.assert_close(ensemble.last_loss[1:], single.last_loss, rtol=1e-5, atol=1e-6)
    assert (first < np.log(11)).all()  # it learned something


def test_sequence_tasks_refuse_models_and_probes_that_read_one_label():
    base = {"task": {"name": "test-token-strings"}, "model": {"name": "mlp"}}
    with pytest.raises(SpecError, match="model.name: 'mlp' reads a whole sequence at once"):
        Trainer(Experiment.model_validate(base))
    base["model"] = {"name": "transformer", "d_model": 16, "heads": 2}
    with pytest.raises(SpecError, match="probes\\[0\\]: neural_collapse needs one label per example"):
        Trainer(Experiment.model_validate({**base, "probes": ["neural_collapse"]}))
