"""`recipe.loss: mse` on classification tasks, and the MLP's one-hot token
inputs and init scale (the modular-arithmetic setting of Doshi et al.),
each against a hand computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from learnscope.errors import SpecError
from learnscope.losses import IGNORE, example_losses
from learnscope.spec import Experiment
from learnscope.tasks.base import TaskInfo
from learnscope.train.trainer import Trainer


def info(classes: int, sequence: bool = False, groups=None) -> TaskInfo:
    return TaskInfo(input_kind="vector", input_shape=(3,), output_dim=classes, loss="cross_entropy",
                    splits=("train",), sequence=sequence, class_groups=groups)


def test_mse_is_the_mean_squared_error_to_the_one_hot_target():
    gen = torch.Generator().manual_seed(0)
    outputs = torch.randn(2, 5, 4, generator=gen)
    targets = torch.randint(0, 4, (2, 5), generator=gen)
    got = example_losses(info(4), outputs, targets, "mse")
    one_hot = np.eye(4)[targets.numpy()]
    np.testing.assert_allclose(got.numpy(), ((outputs.numpy() - one_hot) ** 2).mean(-1), rtol=1e-6)


def test_mse_scores_only_the_class_group_and_the_scored_positions():
    groups = ((0, 1, 2), (3, 4, 5))
    outputs = torch.randn(1, 2, 6, generator=torch.Generator().manual_seed(1)).requires_grad_()
    targets = torch.tensor([[1, 5]])
    losses = example_losses(info(6, groups=groups), outputs, targets, "mse")
    o = outputs.detach().numpy()[0]
    want = [((o[0, :3] - [0, 1, 0]) ** 2).mean(), ((o[1, 3:] - [0, 0, 1]) ** 2).mean()]
    np.testing.assert_allclose(losses.detach().numpy()[0], want, rtol=1e-6)
    losses.sum().backward()
    assert outputs.grad is not None and (outputs.grad[0, 0, 3:] == 0).all() and (outputs.grad[0, 1, :3] == 0).all()
    sequence = torch.tensor([[[2, IGNORE]]])
    seq_out = torch.randn(1, 1, 2, 3, generator=torch.Generator().manual_seed(2))
    got = example_losses(info(3, sequence=True), seq_out, sequence, "mse")
    np.testing.assert_allclose(float(got[0, 0]), ((seq_out[0, 0, 0].numpy() - [0, 0, 1]) ** 2).mean(), rtol=1e-6)


TASK = {"name": "modular-arithmetic", "p": 7, "train_fraction": 0.5}


def mlp_trainer(model: dict, steps: int = 3, **recipe) -> Trainer:
    return Trainer(Experiment.model_validate({
        "task": TASK, "model": {"name": "mlp", "hidden": [16], **model}, "seeds": [0, 1], "probes": ["loss"],
        "recipe": {"optimizer": "adam", "lr": 0.01, "steps": steps, "probe_every": steps, "probe_log_points": 0,
                   **recipe}}))


def test_one_hot_token_inputs_feed_the_first_layer_one_hot_vectors():
    trainer = mlp_trainer({"token_input": "one_hot", "activation": "quadratic", "bias": False})
    net = trainer.model
    assert net.embedding is None and net.hidden[0].weight.shape[1] == 3 * 8  # [a, b, =] over p + 1 tokens
    x = trainer.data.splits["test"][0]  # [S, N, 3] tokens
    one_hot = torch.nn.functional.one_hot(x, 8).flatten(-2).float()
    want = (one_hot @ net.hidden[0].weight) ** 2 @ net.head.weight
    torch.testing.assert_close(net(x), want)


def test_init_std_draws_every_weight_from_that_normal_and_the_default_is_unchanged():
    scaled = mlp_trainer({"init_std": 0.05, "hidden": [400]}).model
    for layer in (scaled.hidden[0], scaled.head):
        weight = layer.weight.detach()
        assert abs(float(weight.std()) - 0.05) < 0.003 and abs(float(weight.mean())) < 0.003
    default, again = mlp_trainer({}).model, mlp_trainer({"init_std": None}).model
    for p, q in zip(default.parameters(), again.parameters()):
        assert torch.equal(p, q)
    bound = 1 / (default.hidden[0].weight.shape[1] ** 0.5)
    assert float(default.hidden[0].weight.abs().max()) <= bound


def test_training_with_mse_lowers_it():
    trainer = mlp_trainer({"token_input": "one_hot"}, steps=20, loss="mse")
    x, y = trainer.data.splits["train"]
    before = example_losses(trainer.info, trainer.model(x), y, "mse").mean()
    for _ in range(20):
        trainer.train_step()
    assert example_losses(trainer.info, trainer.model(x), y, "mse").mean() < before


def test_an_unknown_token_input_is_refused():
    with pytest.raises(SpecError, match="token_input"):
        mlp_trainer({"token_input": "bag"})


def test_fourier_ipr_reads_the_one_hot_blocks_of_the_first_layer():
    from learnscope.probes.fourier import neuron_ipr

    net = mlp_trainer({"token_input": "one_hot", "activation": "quadratic", "bias": False}).model
    w1, w2 = net.hidden[0].weight.detach().double().numpy(), net.head.weight.detach().double().numpy()

    def ipr(rows):  # rows [N, p]: the authors' one-sided spectrum, r = 2
        spectrum = np.abs(np.fft.rfft(rows, axis=1))
        return (spectrum ** 4).sum(1) / (spectrum ** 2).sum(1) ** 2

    for s in range(2):
        want = (ipr(w1[s, :7].T) + ipr(w1[s, 8:15].T) + ipr(w2[s])) / 3  # a's and b's blocks of p + 1 rows
        np.testing.assert_allclose(neuron_ipr(net, 7)[s].numpy(), want, rtol=1e-10)
