"""The `random-features` model (features against a numpy computation, seed k
of an ensemble against its single run, the projection fixed through training
and rebuilt on resume, bad input) and the `double-descent` phenomenon's
signature logic and example spec."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from learnscope.catalog.double_descent import (
    SHORT_STEPS,
    THRESHOLD_WIDTH,
    TRAIN_EXAMPLES,
    WIDTHS,
    DoubleDescent,
    arm_name,
    width_experiment,
)
from learnscope.errors import SpecError
from learnscope.models.base import Sites
from learnscope.results import ArmData
from learnscope.seeding import generator
from learnscope.spec import Experiment
from learnscope.store.base import RunRecord
from learnscope.train.passes import PassPlan
from learnscope.train.trainer import Trainer

TASK = {"name": "teacher-student", "input_dim": 6, "width": 4, "samples": 24, "test_samples": 16, "noise": 0.5}
STEPS = 40


def spec(seeds: list[int], steps: int = STEPS, **model) -> Experiment:
    return Experiment.model_validate({
        "task": TASK, "model": {"name": "random-features", "width": 20, **model},
        "recipe": {"optimizer": "sgd", "lr": 0.5, "momentum": 0.9, "steps": steps, "probe_every": 10,
                   "probe_log_points": 0},
        "probes": ["loss", "weight_norm"], "seeds": seeds,
    })


def train(experiment: Experiment) -> tuple[Trainer, dict[int, dict[str, np.ndarray]]]:
    trainer = Trainer(experiment)
    record: dict[int, dict[str, np.ndarray]] = {}
    trainer.run(on_probe=lambda step, m: record.__setitem__(step, {k: v.double().numpy().copy() for k, v in m.items()}))
    return trainer, record


# ---------------------------------------------------------------- the model


def test_features_and_outputs_match_a_numpy_computation():
    """act(x P) / sqrt(width) W + b, with P drawn N(0, 1/d) from the seed's own stream."""
    trainer = Trainer(spec([3, 7], readout_init="uniform", bias=True, activation="tanh"))
    model = trainer.model
    x = trainer.data.splits["test"][0]  # [S, B, d]
    out = model(x).detach().double().numpy()
    for k, seed in enumerate([3, 7]):
        gen = generator(seed, "random-features")
        p = (torch.randn(6, 20, generator=gen) / math.sqrt(6)).double().numpy()
        np.testing.assert_array_equal(model.projection[k].numpy(), p.astype(np.float32))
        xs = x[k].double().numpy()
        features = np.tanh(xs @ p) / math.sqrt(20)
        w, b = model.head.weight[k].detach().double().numpy(), model.head.bias[k].detach().double().numpy()
        np.testing.assert_allclose(out[k], features @ w + b, rtol=1e-5, atol=1e-6)
        sites = Sites(read=["projection", "penultimate"])
        model(x, sites)
        np.testing.assert_allclose(sites.acts["projection"][k].double().numpy(), xs @ p, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(sites.acts["penultimate"][k].double().numpy(), features, rtol=1e-5, atol=1e-6)
    assert not np.allclose(model.projection[0].numpy(), model.projection[1].numpy())  # each seed its own P


def test_the_readout_starts_at_zero_by_default_and_relu_is_the_activation():
    trainer = Trainer(spec([0]))
    model = trainer.model
    assert torch.count_nonzero(model.head.weight) == 0 and model.head.bias is None
    x = trainer.data.splits["train"][0]
    assert torch.count_nonzero(model(x)) == 0
    sites = Sites(read=["projection", "penultimate"])
    model(x, sites)
    torch.testing.assert_close(sites.acts["penultimate"], torch.relu(sites.acts["projection"]) / math.sqrt(20))
    assert (sites.acts["projection"] < 0).any()  # so the relu is not vacuous


def test_only_the_readout_trains_and_the_projection_never_changes():
    trainer = Trainer(spec([0, 1]))
    names = [name for name, p in trainer.model.named_parameters() if p.requires_grad]
    assert names == ["head.weight"]
    assert "projection" in dict(trainer.model.named_buffers())
    before = trainer.model.projection.clone()
    readout = trainer.model.head.weight.detach().clone()
    trainer.run()
    assert torch.equal(trainer.model.projection, before)
    assert not torch.allclose(trainer.model.head.weight, readout)
    tensors, _ = trainer.state()
    assert not any("projection" in key for key in tensors)  # rebuilt from the seeds, not checkpointed


@pytest.mark.parametrize("k", range(3))
def test_member_equals_single_run(k):
    seeds = [0, 1, 2]
    ensemble, ens_record = train(spec(seeds))
    seed = seeds[k]
    single, record = train(spec([seed]))
    assert sorted(record) == sorted(ens_record) == list(range(0, STEPS + 1, 10))
    for step, metrics in record.items():
        for name, value in metrics.items():
            np.testing.assert_allclose(ens_record[step][name][k], value[0], rtol=1e-5, atol=1e-9,
                                       err_msg=f"seed {seed}, step {step}, {name}")
    assert torch.equal(ensemble.model.projection[k], single.model.projection[0])
    torch.testing.assert_close(ensemble.model.head.weight[k], single.model.head.weight[0], rtol=1e-5, atol=1e-6)
    # the seeds differ, so the equalities are not vacuous
    assert len(set(np.round(ens_record[STEPS]["loss/train"], 7))) == len(seeds)


def test_a_restored_trainer_continues_as_if_never_stopped():
    whole, _ = train(spec([0, 1], steps=2 * STEPS))
    first = Trainer(spec([0, 1], steps=2 * STEPS))
    while first.step < STEPS:
        first.train_step()
    tensors, meta = first.state()
    resumed = Trainer(spec([0, 1], steps=2 * STEPS))
    resumed.load_state(tensors, meta)
    resumed.run()
    assert torch.equal(resumed.model.head.weight, whole.model.head.weight)
    assert torch.equal(resumed.model.projection, whole.model.projection)


def test_the_memory_estimate_counts_the_fixed_projection_without_allocating_it():
    from learnscope.train.memory import parameter_need

    need = parameter_need(spec([0, 1, 2], width=1000))
    assert need is not None  # built on the meta device: shapes only
    readout, projection = 1000 * 4, 6 * 1000 * 4
    assert need.parameters == 3 * (readout + projection + readout)  # the model, then its trained part again
    assert need.gradients == 3 * readout


def test_bad_input_is_refused_naming_what_is_valid():
    with pytest.raises(SpecError, match="width"):
        spec([0], width=0)
    with pytest.raises(SpecError, match="relu"):
        spec([0], activation="sigmoid")
    with pytest.raises(SpecError, match="zero"):
        spec([0], readout_init="normal")
    tokens = {"task": {"name": "modular-arithmetic", "p": 7}, "model": {"name": "random-features"}}
    with pytest.raises(SpecError, match="vector inputs"):
        Trainer(Experiment.model_validate(tokens))


def test_a_pass_over_a_group_of_seeds_is_refused_with_the_remedy():
    trainer = Trainer(spec([0, 1, 2, 3]))
    trainer.plan = PassPlan(seeds=2, examples=trainer.plan.examples)
    with pytest.raises(SpecError, match="microbatch"):
        trainer.train_step()


# ---------------------------------------------------------------- the phenomenon


def test_arms_are_the_widths_around_the_threshold_at_both_sizes():
    phenomenon = DoubleDescent()
    quick, full = phenomenon.arms(quick=True), phenomenon.arms(quick=False)
    assert [a.name for a in quick] == [a.name for a in full] == [arm_name(w) for w in WIDTHS]
    assert THRESHOLD_WIDTH * 1 == TRAIN_EXAMPLES  # width x one output = n
    assert min(WIDTHS) < TRAIN_EXAMPLES / 4 and max(WIDTHS) > 4 * TRAIN_EXAMPLES
    for arm in quick + full:
        assert arm.experiment.task.samples == TRAIN_EXAMPLES
        assert arm.experiment.recipe.schedule == "constant" and arm.experiment.recipe.batch_size is None
        assert arm.experiment.recipe.is_probe_step(SHORT_STEPS) and arm.experiment.recipe.steps > SHORT_STEPS


def test_the_short_budget_is_exactly_a_run_of_that_many_steps():
    """Why the signature may read step 25 of the long runs as a 25-step run."""
    long = width_experiment(THRESHOLD_WIDTH, quick=True).derive({"seeds": [0]})
    short = long.derive({"recipe.steps": SHORT_STEPS})
    _, long_record = train(long)
    _, short_record = train(short)
    for name, value in short_record[SHORT_STEPS].items():
        np.testing.assert_array_equal(value, long_record[SHORT_STEPS][name], err_msg=name)


def fake_arms(test_long: dict[int, list[float]], test_short: dict[int, list[float]], steps: int = 800):
    """ArmData per width with loss/test and loss/train at steps 0, SHORT_STEPS and `steps`, per seed."""
    arms = {}
    for width in WIDTHS:
        rows = []
        for seed, (short, long) in enumerate(zip(test_short[width], test_long[width])):
            for step, value in ((0, 1.0), (SHORT_STEPS, short), (steps, long)):
                rows.append(("r", seed, step, "loss/test", value))
                rows.append(("r", seed, step, "loss/train", 0.1))
        record = RunRecord(f"r.{arm_name(width)}", "double-descent", "experiment", "r", arm_name(width), {},
                           [0, 1], "finished", None, 0.0, None, "", "")
        arms[arm_name(width)] = ArmData(record, pd.DataFrame(rows, columns=["run_id", "seed", "step", "name",
                                                                            "value"]))
    return arms


def test_the_signature_needs_a_peak_that_the_short_budget_flattens():
    flat = {w: [1.0, 1.0] for w in WIDTHS}
    peaked = {w: [1.0, 1.0] for w in WIDTHS} | {THRESHOLD_WIDTH: [5.0, 5.0]}
    # seed 0: the peak at the long budget only; seed 1: as tall after 25 steps
    short = {w: [1.0, 1.0] for w in WIDTHS} | {THRESHOLD_WIDTH: [1.2, 5.0]}
    verdict = DoubleDescent().check(fake_arms(peaked, short))
    assert verdict.passed == [True, False]
    assert "did not shrink" in verdict.failures[1]
    assert verdict.measures["peak height"] == [5.0, 5.0]
    assert verdict.measures["short excess share"] == pytest.approx([0.05, 1.0])
    none = DoubleDescent().check(fake_arms(flat, flat))
    assert none.passed == [False, False] and "no peak" in none.failures[0]
    too_short = DoubleDescent().check(fake_arms(peaked, short, steps=SHORT_STEPS))
    assert not any(too_short.passed) and "cannot be read" in too_short.failures[0]


def test_the_example_spec_is_the_threshold_arm_and_trains_the_same():
    example = Experiment.model_validate(yaml.safe_load(
        (Path(__file__).parents[1] / "examples" / "double-descent.yaml").read_text()))
    arm = width_experiment(THRESHOLD_WIDTH, quick=True)
    assert example.seed_list == arm.seed_list
    assert {**example.to_dict(), "seeds": None} == {**arm.to_dict(), "seeds": None}
    cut = {"recipe.steps": 30, "seeds": [0, 1]}
    _, from_example = train(example.derive(cut))
    _, from_arm = train(arm.derive(cut))
    assert from_example.keys() == from_arm.keys()
    for step in from_arm:
        for name in from_arm[step]:
            np.testing.assert_array_equal(from_example[step][name], from_arm[step][name])


def test_the_figure_draws_both_budgets_against_width():
    peaked = {w: [1.0, 1.0] for w in WIDTHS} | {THRESHOLD_WIDTH: [5.0, 4.0]}
    (figure,) = DoubleDescent().figures(fake_arms(peaked, {w: [1.0, 1.1] for w in WIDTHS}))
    assert [label for label, _, _ in figure.lines] == [f"after {SHORT_STEPS} steps", "after 800 steps"]
    _, x, values = figure.lines[1]
    assert x[WIDTHS.index(THRESHOLD_WIDTH)] == 0 and values.shape == (2, len(WIDTHS))
    assert values[:, WIDTHS.index(THRESHOLD_WIDTH)].tolist() == [5.0, 4.0]
