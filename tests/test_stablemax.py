"""StableMax cross-entropy (`recipe.loss: stablemax`), against an independent
numpy computation in float64 of the definition in "Grokking at the Edge of
Numerical Stability": s(x) = x + 1 for x >= 0, 1 / (1 - x) for x < 0,
p_i = s(x_i) / sum_j s(x_j), loss = -log p_target."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from learnscope.errors import SpecError
from learnscope.losses import IGNORE, example_accuracy, example_losses, stablemax_cross_entropy
from learnscope.spec import Experiment
from learnscope.tasks.base import TaskInfo
from learnscope.train.trainer import Trainer


def numpy_stablemax_ce(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    x = logits.astype(np.float64)
    s = np.empty_like(x)
    s[x >= 0] = x[x >= 0] + 1
    s[x < 0] = 1 / (1 - x[x < 0])
    p = s / s.sum(-1, keepdims=True)
    return -np.log(p[np.arange(len(targets)), targets])


def info(classes: int, sequence: bool = False, groups=None) -> TaskInfo:
    return TaskInfo(input_kind="vector", input_shape=(3,), output_dim=classes, loss="cross_entropy",
                    splits=("train",), sequence=sequence, class_groups=groups)


RNG = np.random.default_rng(0)
CASES = {
    "random": RNG.normal(0, 3, (64, 7)),
    "large-positive": RNG.uniform(1e3, 1e6, (32, 5)),
    "large-negative": -RNG.uniform(1e3, 1e6, (32, 5)),
    "mixed-extreme": RNG.choice([-1e30, -1e4, -1.0, 0.0, 0.5, 1.0, 1e4, 1e30], (64, 6)),
    # one logit far ahead: the softmax would round to one-hot in float32, StableMax does not
    "confident": np.concatenate([np.full((16, 1), 300.0), RNG.normal(0, 1, (16, 9))], 1),
}


@pytest.mark.parametrize("case", list(CASES))
def test_matches_numpy_in_float64(case):
    logits32 = torch.tensor(CASES[case], dtype=torch.float32)
    targets = torch.tensor(RNG.integers(0, logits32.shape[1], len(logits32)))
    expected = numpy_stablemax_ce(logits32.double().numpy(), targets.numpy())  # the float32 logits, in float64
    got = stablemax_cross_entropy(logits32, targets)
    assert got.dtype == torch.float32  # cast back to the logits' dtype
    np.testing.assert_allclose(got.double().numpy(), expected, rtol=1e-6, atol=1e-12)
    got64 = stablemax_cross_entropy(logits32.double(), targets)
    np.testing.assert_allclose(got64.numpy(), expected, rtol=1e-13, atol=1e-300)
    assert torch.isfinite(got).all()


def test_the_confident_case_keeps_a_loss_the_float32_softmax_rounds_to_zero():
    logits = torch.tensor(CASES["confident"], dtype=torch.float32)
    targets = torch.zeros(len(logits), dtype=torch.long)
    softmax = torch.nn.functional.cross_entropy(logits, targets, reduction="none")
    assert (softmax == 0).all()
    assert (stablemax_cross_entropy(logits, targets) > 1e-3).all()


def test_example_losses_with_a_seed_axis_and_the_accuracy_unchanged():
    S, B, C = 3, 10, 6
    outputs = torch.randn(S, B, C, generator=torch.Generator().manual_seed(1)) * 4
    targets = torch.randint(0, C, (S, B), generator=torch.Generator().manual_seed(2))
    got = example_losses(info(C), outputs, targets, "stablemax")
    assert got.shape == (S, B)
    for k in range(S):
        np.testing.assert_allclose(got[k].double().numpy(), numpy_stablemax_ce(outputs[k].double().numpy(),
                                   targets[k].numpy()), rtol=1e-6)
    # StableMax is monotone: the prediction is the softmax's arg-max
    s = torch.where(outputs >= 0, outputs + 1, 1 / (1 - outputs))
    assert torch.equal(example_accuracy(info(C), outputs, targets), (s.argmax(-1) == targets).float())
    assert not torch.allclose(got, example_losses(info(C), outputs, targets))  # not the softmax's


def test_sequences_score_only_their_scored_positions():
    S, B, T, C = 2, 3, 4, 5
    outputs = torch.randn(S, B, T, C, generator=torch.Generator().manual_seed(3))
    targets = torch.randint(0, C, (S, B, T), generator=torch.Generator().manual_seed(4))
    targets[:, :, :2] = IGNORE
    targets[1, 2, :] = IGNORE  # an example with nothing scored: loss 0
    got = example_losses(info(C, sequence=True), outputs, targets, "stablemax")
    for k in range(S):
        for b in range(B):
            scored = targets[k, b] != IGNORE
            if not scored.any():
                assert got[k, b] == 0
                continue
            want = numpy_stablemax_ce(outputs[k, b][scored].double().numpy(), targets[k, b][scored].numpy()).mean()
            np.testing.assert_allclose(float(got[k, b]), want, rtol=1e-6)


def test_logits_outside_the_class_group_do_not_compete_and_take_no_gradient():
    groups = ((0, 1, 2), (3, 4, 5))
    outputs = torch.randn(1, 4, 6, generator=torch.Generator().manual_seed(5)).requires_grad_()
    targets = torch.tensor([[0, 2, 4, 5]])
    losses = example_losses(info(6, groups=groups), outputs, targets, "stablemax")
    for b, t in enumerate(targets[0].tolist()):
        group = list(groups[t // 3])
        want = numpy_stablemax_ce(outputs[0, b, group].detach().double().numpy()[None], np.array([group.index(t)]))
        np.testing.assert_allclose(float(losses[0, b].detach()), want[0], rtol=1e-6)
    losses.sum().backward()
    assert outputs.grad is not None and torch.isfinite(outputs.grad).all()
    assert (outputs.grad[0, :2, 3:] == 0).all() and (outputs.grad[0, 2:, :3] == 0).all()


def test_gradients_flow_gradcheck_in_float64():
    logits = torch.tensor([[0.3, -1.2, 2.5, -0.1], [1.7, 0.2, -3.0, 4.0], [-0.5, -0.7, -2.0, -0.05]],
                          dtype=torch.float64, requires_grad=True)
    targets = torch.tensor([2, 0, 3])
    assert torch.autograd.gradcheck(lambda x: stablemax_cross_entropy(x, targets), (logits,))
    # and across the kink at 0 and at 1, where the untaken branch 1 / (1 - x) would divide by zero
    at_kinks = torch.tensor([[0.0, 1.0, -1.0]], dtype=torch.float64, requires_grad=True)
    stablemax_cross_entropy(at_kinks, torch.tensor([1])).sum().backward()
    assert at_kinks.grad is not None and torch.isfinite(at_kinks.grad).all()


def test_the_closed_form_gradient_equals_autograd_through_the_definition():
    """Unscored rows, logits at -inf and both branches, against autograd of the
    definition written as plain ops."""
    gen = torch.Generator().manual_seed(3)
    logits = (torch.randn(40, 9, generator=gen, dtype=torch.float64) * 4).requires_grad_()
    with torch.no_grad():
        logits[:5, 7:] = float("-inf")
    targets = torch.randint(0, 7, (40,), generator=gen)
    targets[::6] = IGNORE
    upstream = torch.rand(40, generator=gen, dtype=torch.float64)

    def by_definition(x):
        s = torch.where(x >= 0, x + 1, 1 / (1 - x.clamp(max=0)))
        picked = s.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        return torch.where(targets != IGNORE, -torch.log(picked / s.sum(-1)), 0.0)

    (want,) = torch.autograd.grad((by_definition(logits) * upstream).sum(), logits)
    (got,) = torch.autograd.grad((stablemax_cross_entropy(logits, targets) * upstream).sum(), logits)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-15)
    assert (got[targets == IGNORE] == 0).all() and (got[:5, 7:] == 0).all()


# ---------------------------------------------------------------- the recipe switch

TASK = {"name": "gaussian-mixture", "classes": 4, "dim": 6, "samples": 64, "test_samples": 16}
MODEL = {"name": "mlp", "hidden": [16]}


def trainer(loss: str | None, task=TASK, steps: int = 5) -> Trainer:
    recipe = {"optimizer": "sgd", "lr": 0.1, "steps": steps, "probe_every": steps, "probe_log_points": 0}
    if loss is not None:
        recipe["loss"] = loss
    return Trainer(Experiment.model_validate({"task": task, "model": MODEL, "recipe": recipe, "seeds": [0, 1],
                                              "probes": ["loss"]}))


def test_the_default_is_softmax_and_an_unknown_loss_is_one_line():
    assert Experiment.model_validate({"task": TASK, "model": MODEL}).recipe.loss == "softmax"
    with pytest.raises(SpecError) as err:
        Experiment.model_validate({"task": TASK, "model": MODEL, "recipe": {"loss": "sparsemax"}})
    message = str(err.value)
    assert "\n" not in message and "recipe.loss" in message
    assert "'softmax'" in message and "'stablemax'" in message


def test_stablemax_on_a_regression_task_is_refused_before_training():
    regression = {"name": "teacher-student", "input_dim": 5, "samples": 40}
    with pytest.raises(SpecError, match="recipe.loss.*regression.*valid: softmax"):
        trainer("stablemax", task=regression)


def test_training_follows_the_recipes_loss():
    stable, softmax = trainer("stablemax"), trainer(None)
    for t in (stable, softmax):
        t.run()
    x, y = stable.train_x, stable.train_y
    with torch.no_grad():
        outputs = stable.model(x)
        measured = stable.measure()["loss/train"]
    for k in range(2):
        want = numpy_stablemax_ce(outputs[k].double().numpy(), y[k].numpy()).mean()
        np.testing.assert_allclose(float(measured[k]), want, rtol=1e-5)
    # same initialization and data, another loss: other weights
    assert all(torch.equal(a, b) for a, b in zip(stable.initial_params, softmax.initial_params))
    assert not all(torch.allclose(a, b) for a, b in zip(stable.params, softmax.params))


def test_flush_denormal_holds_during_the_run_only_and_changes_nothing_above_the_subnormals():
    def subnormal_survives() -> bool:
        return (torch.tensor([1e-39]) * 1.0).item() != 0.0

    spec = {"task": {"name": "modular-arithmetic", "p": 7, "train_fraction": 0.6}, "model": {"name": "mlp", "hidden": [8]},
            "recipe": {"steps": 6, "probe_every": 3, "probe_log_points": 0}, "seeds": [0, 1], "probes": ["loss"]}
    seen, runs = [], {}
    for flush in (False, True):
        spec["recipe"]["flush_denormal"] = flush
        tr = Trainer(Experiment.model_validate(spec))
        record: dict = {}
        tr.run(on_probe=lambda step, m, record=record: record.update({step: m["loss/test"].clone()}),
               on_step=lambda step, flush=flush: seen.append((flush, subnormal_survives())))
        runs[flush] = record
        assert subnormal_survives()  # back to the default after the run
    assert {flag for flag, _ in seen} == {False, True}
    assert all(survives != flag for flag, survives in seen)  # flushed exactly while a flushing run trains
    for step in runs[False]:
        torch.testing.assert_close(runs[True][step], runs[False][step], rtol=0, atol=0)
