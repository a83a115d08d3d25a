"""What unlearning builds on: starting a run from another run's last
checkpoint (`init_from`), training on a chosen split (`recipe.train_split`),
an intervention's objective replacing the task loss, and extra batches drawn
per seed and step (`Trainer.sample`)."""

from __future__ import annotations

import json

import pytest
import torch

from learnscope import registry
from learnscope.catalog.base import Arm, Phenomenon
from learnscope.cli import main
from learnscope.errors import LearnscopeError, SpecError
from learnscope.runner import run_experiment, run_phenomenon, start_from
from learnscope.runs import Run
from learnscope.spec import Experiment
from learnscope.store.sqlite import Store
from learnscope.train.hooks import Intervention, InterventionState
from learnscope.train.trainer import Trainer

SPEC = {
    "task": {"name": "gaussian-mixture", "classes": 3, "dim": 4, "samples": 60, "test_samples": 30, "label_noise": 0.2},
    "model": {"name": "mlp", "hidden": [8]},
    "recipe": {"optimizer": "sgd", "lr": 0.1, "steps": 20, "probe_every": 10, "probe_log_points": 0},
    "probes": ["weight_norm", "accuracy"],
    "seeds": [0, 1, 2],
}


def weight_norms(run, step) -> dict[int, float]:
    frame = run.metrics
    rows = frame[(frame["name"] == "weight_norm") & (frame["step"] == step)]
    return dict(zip(rows["seed"], rows["value"]))


def test_a_run_starts_from_another_runs_last_checkpoint(tmp_path):
    store = Store(tmp_path / "store")
    source = run_experiment(Experiment.model_validate(SPEC), store, run_id="source")
    follow = run_experiment(Experiment.model_validate({**SPEC, "seeds": [2, 0], "init_from": "source"}), store)
    # step 0 of the follower is the source's last step, seed by seed
    assert weight_norms(follow, 0) == {s: v for s, v in weight_norms(source, 20).items() if s in (0, 2)}
    # and it is the reference the follower's weight change is measured from
    trainer = Trainer(Experiment.model_validate({**SPEC, "seeds": [2, 0], "init_from": "source"}))
    start_from(store, trainer)
    assert all(torch.equal(p, p0) for p, p0 in zip(trainer.params, trainer.initial_params))


@pytest.mark.parametrize("change,expected", [
    ({"init_from": "nope"}, "unknown run id 'nope'"),
    ({"init_from": "source", "seeds": [0, 5]}, "init_from: run 'source' trained seeds [0, 1, 2]; this experiment's "
                                               "seeds [5] are not among them"),
    ({"init_from": "source", "model": {"name": "mlp", "hidden": [9]}}, "init_from: the model of run 'source' does "
                                                                      "not match this model: parameter hidden.0.weight"),
])
def test_bad_starting_points_are_refused_in_one_line(change, expected, tmp_path, capsys):
    store = Store(tmp_path / "store")
    run_experiment(Experiment.model_validate(SPEC), store, run_id="source")
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({**SPEC, **change}))
    code = main(["run", str(spec), "--store", str(store.dir), "--no-report"])
    err = capsys.readouterr().err
    assert code == 2 and expected in err and err.count("\n") == 1, err
    assert [r.id for r in Store(store.dir).list_runs()] == ["source"]  # nothing recorded


def test_training_on_a_chosen_split(tmp_path):
    trainer = Trainer(Experiment.model_validate({**SPEC, "recipe": {**SPEC["recipe"], "train_split": "train_clean"}}))
    clean_x, _ = trainer.data.splits["train_clean"]
    x, _ = trainer.batch()
    assert torch.equal(x, clean_x)
    with pytest.raises(SpecError, match="recipe.train_split: unknown split 'tran'; valid: .*did you mean 'train'"):
        Trainer(Experiment.model_validate({**SPEC, "recipe": {**SPEC["recipe"], "train_split": "tran"}}))


@registry.interventions.register("test-ascent")
class Ascent(Intervention):
    """Test objective: gradient ascent on the task loss."""

    def build(self, trainer):
        return _Ascent()


class _Ascent(InterventionState):
    whole_batches = True

    def objective(self, trainer, inputs, outputs, targets, members):
        return -trainer.loss_per_seed(outputs, targets)


def test_an_objective_replaces_the_task_loss():
    grads = []
    for interventions in ([], [{"name": "test-ascent"}]):
        trainer = Trainer(Experiment.model_validate({**SPEC, "interventions": interventions}))
        trainer.optimizer.step = lambda: None
        trainer.train_step()
        grads.append([p.grad.clone() for p in trainer.params])
        assert trainer.plan.examples == trainer.sampler.n  # whole batches when an objective asks for them
    for descent, ascent in zip(*grads):
        assert descent.abs().max() > 0
        torch.testing.assert_close(ascent, -descent)


def test_extra_batches_are_per_seed_and_step():
    trainer = Trainer(Experiment.model_validate(SPEC))
    alone = Trainer(Experiment.model_validate({**SPEC, "seeds": [1]}))
    x, y = trainer.sample("test", 7, "extra")
    assert x.shape == (3, 7, 4) and y.shape == (3, 7)
    x1, _ = alone.sample("test", 7, "extra")
    assert torch.equal(x[1], x1[0])  # seed 1's draw is its own
    assert not torch.equal(x[0], x[1])
    again, _ = trainer.sample("test", 7, "extra")
    assert torch.equal(again, x)  # the same step draws the same
    trainer.step += 1
    assert not torch.equal(trainer.sample("test", 7, "extra")[0], x)
    # rows of the split, without repeats
    test_x, _ = trainer.data.splits["test"]
    rows = {tuple(r.tolist()) for r in test_x[0]}
    drawn = [tuple(r.tolist()) for r in x[0]]
    assert set(drawn) <= rows and len(set(drawn)) == 7


def test_an_arm_reference_outside_a_phenomenon_is_refused(tmp_path):
    with pytest.raises(LearnscopeError, match="names an arm of a phenomenon"):
        run_experiment(Experiment.model_validate({**SPEC, "init_from": "@original"}), Store(tmp_path / "s"))


def test_an_arm_starts_from_the_arm_it_names_in_a_fresh_run(tmp_path):
    class Chained(Phenomenon):
        summary, source = "two chained arms", "a test"

        def arms(self, quick):
            first = Arm("first", Experiment.model_validate(SPEC))
            return [first, first.derive("second", {"recipe.steps": 10}, starts_from="first")]

        def check(self, arms):
            return self.signature(arms["first"].seeds).verdict()

    registry.phenomena.register("chained-arms-test")(Chained)
    try:
        run = run_phenomenon("chained-arms-test", store=Store(tmp_path / "store"), run_id="chain")
        store = Store(tmp_path / "store")
        first, second = (Run(store, f"{run.id}.{arm}") for arm in ("first", "second"))
        # the second arm's step 0 is the first arm's last step, seed by seed, not its own initialization
        assert weight_norms(second, 0) == weight_norms(first, 20)
        assert weight_norms(second, 0) != weight_norms(first, 0)
    finally:
        registry.phenomena._entries.pop("chained-arms-test", None)
