"""Distillation from a teacher run: the KD and Sinkhorn terms against direct
computations, the objective against a hand computation from the teacher's
own run, ensembles against single runs, exact resume, and the runs a spec
reads (a teacher, a random teacher of 0 updates, an init stream)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.special import log_softmax as np_log_softmax

from helpers import assert_resumes_exactly, cli
from learnscope.catalog.base import Arm, arm_table
from learnscope.errors import LearnscopeError
from learnscope.interventions.distill import distillation_kl, sinkhorn_distance
from learnscope.runner import run_experiment, start_from
from learnscope.spec import Experiment
from learnscope.store.checkpoints import read_checkpoint
from learnscope.store.sqlite import Store
from learnscope.sweep.grid import Trial
from learnscope.sweep.trial import _sources
from learnscope.train.trainer import Trainer

TASK = {"name": "gaussian-mixture", "classes": 4, "dim": 6, "samples": 96, "test_samples": 32}


def spec(model=None, interventions=(), seeds=(0, 1, 2), steps=6, **extra) -> dict:
    return {"task": TASK, "model": model or {"name": "mlp", "hidden": [12]},
            "recipe": {"optimizer": "adam", "lr": 1e-2, "batch_size": 16, "steps": steps, "probe_every": 3,
                       "probe_log_points": 0},
            "interventions": list(interventions), "probes": [{"name": "accuracy", "splits": ["test"]}],
            "seeds": list(seeds), **extra}


def kd(**fields) -> dict:
    return {"name": "distill", "teacher": "teacher", **fields}


@pytest.fixture
def store(tmp_path):
    store = Store(tmp_path / "store")
    run_experiment(Experiment.model_validate(spec({"name": "mlp", "hidden": [20, 20]}, steps=30)), store,
                   run_id="teacher")
    return store


def loaded(store, raw: dict) -> Trainer:
    trainer = Trainer(Experiment.model_validate(raw))
    start_from(store, trainer)
    return trainer


def test_kd_term_is_t_squared_kl_of_the_softened_distributions():
    gen = torch.Generator().manual_seed(0)
    teacher, student = torch.randn(2, 5, 7, generator=gen), torch.randn(2, 5, 7, generator=gen)
    for T in (1.0, 3.0):
        p, q = np_log_softmax(teacher.numpy() / T, -1), np_log_softmax(student.numpy() / T, -1)
        expected = T * T * (np.exp(p) * (p - q)).sum(-1)
        np.testing.assert_allclose(distillation_kl(teacher, student, T).numpy(), expected, rtol=1e-5, atol=1e-6)
    # restricted to some classes it is the KL of the renormalized distributions over them (LwF's old classes)
    kept = torch.tensor([True, False, True, True, False, False, True])
    sub = distillation_kl(teacher[..., kept], student[..., kept], 2.0)
    torch.testing.assert_close(distillation_kl(teacher, student, 2.0, kept), sub)
    # a teacher temperature of its own (DINO's sharper teacher) softens the teacher alone; T² stays the student's
    p, q = np_log_softmax(teacher.numpy() / 0.1, -1), np_log_softmax(student.numpy() / 3.0, -1)
    np.testing.assert_allclose(distillation_kl(teacher, student, 3.0, old_temperature=0.1).numpy(),
                               9.0 * (np.exp(p) * (p - q)).sum(-1), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(distillation_kl(teacher, student, 2.0, kept, old_temperature=0.5),
                               distillation_kl(teacher[..., kept], student[..., kept], 2.0, old_temperature=0.5))


def test_sinkhorn_distance_against_a_direct_loop():
    gen = torch.Generator().manual_seed(1)
    student = F.softmax(torch.randn(2, 6, 4, generator=gen), -1)
    teacher = F.softmax(torch.randn(2, 6, 4, generator=gen), -1)
    got = sinkhorn_distance(student, teacher, epsilon=0.1, iterations=20)
    for s in range(2):
        x, y = student[s].double().numpy(), teacher[s].double().numpy()
        cost = np.array([[np.abs(x[i] - y[j]).sum() for j in range(6)] for i in range(6)])
        plan = np.exp(-cost / 0.1)
        for _ in range(20):
            plan /= plan.sum(1, keepdims=True)
            plan /= plan.sum(0, keepdims=True)
        assert got[s].item() == pytest.approx((plan * cost).sum(), rel=1e-4)
        np.testing.assert_allclose(plan.sum(0), 1, rtol=1e-9)  # the columns end normalized
    # identical distributions cost nothing to transport when the plan is near the identity
    same = sinkhorn_distance(student, student, epsilon=1e-3, iterations=50)
    assert (same < 1e-3).all()


@pytest.mark.parametrize("fields", [{"alpha": 0.3, "temperature": 2.0}, {"alpha": 1.0, "temperature": 4.0},
                                    {"alpha": 1.0, "temperature": 3.0, "teacher_temperature": 0.1},
                                    {"alpha": 0.5, "loss": "sinkhorn", "temperature": 2.0, "epsilon": 0.2},
                                    {"alpha": 0.5, "loss": "sinkhorn", "temperature": 2.0, "epsilon": 0.2,
                                     "teacher_temperature": 0.5}])
def test_the_objective_against_the_teacher_runs_own_outputs(store, fields):
    student = loaded(store, spec(interventions=[kd(**fields)]))
    teacher = Trainer(Experiment.model_validate(spec({"name": "mlp", "hidden": [20, 20]}, steps=30)))
    checkpoint = read_checkpoint(store, "teacher")
    teacher.load_state(checkpoint.tensors, checkpoint.meta)  # the teacher run itself, at its end
    x, y = student.batch()
    outputs = student.model(x)
    got = student.interventions[0].objective(student, x, outputs, y, slice(0, 3))
    with torch.no_grad():
        taught = teacher.model(x)
    T, alpha = fields["temperature"], fields["alpha"]
    T_t = fields.get("teacher_temperature", T)
    ce = torch.stack([F.cross_entropy(outputs[s], y[s]) for s in range(3)])
    if fields.get("loss") == "sinkhorn":
        term = sinkhorn_distance(F.softmax(outputs / T, -1), F.softmax(taught / T_t, -1), fields["epsilon"], 20)
    else:
        term = torch.stack([T * T * F.kl_div(F.log_softmax(outputs[s] / T, -1), F.log_softmax(taught[s] / T_t, -1),
                                             reduction="batchmean", log_target=True) for s in range(3)])
    torch.testing.assert_close(got, (1 - alpha) * ce + alpha * term)
    # a slice of the ensemble reads its own seeds' teachers
    part = student.interventions[0].objective(student, x[1:], outputs[1:], y[1:], slice(1, 3))
    torch.testing.assert_close(part, got[1:])


@pytest.mark.parametrize("fields", [{"alpha": 0.7}, {"alpha": 0.5, "loss": "sinkhorn"}])
def test_an_ensemble_distills_as_its_single_runs_do(store, fields):
    ensemble = run_experiment(Experiment.model_validate(spec(interventions=[kd(**fields)])), store)
    alone = run_experiment(Experiment.model_validate(spec(interventions=[kd(**fields)], seeds=[2])), store)
    a, b = ensemble.metrics, alone.metrics
    a = a[a.seed == 2].sort_values(["step", "name"]).value.to_numpy()
    b = b.sort_values(["step", "name"]).value.to_numpy()
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_distillation_moves_the_student_towards_the_teacher(store):
    # a random teacher (no updates, its own initialization) disagrees with the labels: what the student learns shows
    run_experiment(Experiment.model_validate(spec(steps=0, init_stream="teacher")), store, run_id="random")
    raws = [spec(steps=30), spec(interventions=[kd(teacher="random", alpha=1.0, temperature=1.0)], steps=30)]
    runs = [run_experiment(Experiment.model_validate(raw), store) for raw in raws]
    student = loaded(store, raws[1])
    teacher_x, _ = student.data.splits["test"]
    with torch.no_grad():
        teacher_out = student.interventions[0].teacher(teacher_x)
    divergence = []
    for run, raw in zip(runs, raws):
        trainer = Trainer(Experiment.model_validate(raw))
        checkpoint = read_checkpoint(store, run.id)
        trainer.load_state(checkpoint.tensors, checkpoint.meta)
        with torch.no_grad():
            divergence.append(distillation_kl(teacher_out, trainer.model(teacher_x), 1.0).mean().item())
    assert divergence[1] < 0.5 * divergence[0]  # the distilled student is far closer to its teacher


def test_a_resumed_distillation_continues_exactly(store):
    for fields in ({"alpha": 0.5}, {"alpha": 0.4, "loss": "sinkhorn"}):
        raw = spec(interventions=[kd(**fields)], steps=8)
        assert_resumes_exactly(lambda raw=raw: loaded(store, raw))


def test_a_run_of_no_updates_is_its_initialization_and_a_random_teacher(tmp_path):
    store = Store(tmp_path / "store")
    frozen = run_experiment(Experiment.model_validate(spec(steps=0)), store, run_id="random")
    assert sorted(frozen.metrics.step.unique()) == [0]
    checkpoint = read_checkpoint(store, "random")
    assert checkpoint is not None and checkpoint.meta["step"] == 0
    fresh = Trainer(Experiment.model_validate(spec()))
    for p, name in zip(fresh.params, [n for n, _ in fresh.model.named_parameters()]):
        torch.testing.assert_close(checkpoint.tensors[f"param/{name}"], p.detach(), rtol=0, atol=0)
    student = loaded(store, spec(interventions=[kd(teacher="random")], init_stream="student"))
    teacher = student.interventions[0].teacher_params
    assert all(torch.equal(teacher[n], checkpoint.tensors[f"param/{n}"]) for n in teacher)


def test_an_init_stream_changes_the_initialization_not_the_data():
    plain, other = Trainer(Experiment.model_validate(spec())), Trainer(Experiment.model_validate(spec(init_stream="b")))
    again = Trainer(Experiment.model_validate(spec(init_stream="b", seeds=[1])))
    assert all(not torch.equal(p, q) for p, q in zip(plain.params, other.params))
    assert all(torch.equal(p[1:2], q) for p, q in zip(other.params, again.params))  # per seed, as ever
    assert torch.equal(plain.batch()[0], other.batch()[0])
    assert torch.equal(plain.data.splits["train"][0], other.data.splits["train"][0])


def test_arms_and_sweeps_know_the_runs_an_experiment_reads():
    teacher = Experiment.model_validate(spec())
    student = Experiment.model_validate(spec(interventions=[kd(teacher="@teacher")]))
    arm_table([Arm("teacher", teacher), Arm("student", student)])
    with pytest.raises(LearnscopeError, match=r"arm 'student' reads '@teacher' at interventions\[0\]\.teacher, which "
                                              r"is not an arm before it"):
        arm_table([Arm("student", student), Arm("teacher", teacher)])
    outside = spec(interventions=[kd(teacher="run-7")], init_from="run-3")
    assert _sources(Trial(0, "t0", {}, [], [0, 1, 2], outside)) == ["run-3", "run-7"]


@pytest.mark.parametrize("change, message", [
    ({"interventions": [kd(teacher="nope")]}, "unknown run id 'nope'"),
    ({"interventions": [kd(teacher="@teacher")]}, "interventions[0].teacher: '@teacher' names an arm of a phenomenon"),
    ({"interventions": [kd()], "task": {**TASK, "classes": 5}},
     "interventions[0].teacher: the model of run 'teacher' does not match this model: parameter"),
    ({"interventions": [kd()], "seeds": [0, 7]}, "interventions[0].teacher: run 'teacher' trained seeds [0, 1, 2]; "
                                                 "this experiment's seeds [7] are not among them"),
    ({"interventions": [kd(loss="emd")]}, "interventions[0].loss"),
    ({"interventions": [kd(alpha=1.5)]}, "interventions[0].alpha"),
    ({"interventions": [kd(teacher_temperature=0)]}, "interventions[0].teacher_temperature"),
])
def test_bad_teachers_are_refused_in_one_line(store, tmp_path, capsys, change, message):
    path = tmp_path / "spec.json"
    path.write_text(json.dumps({**spec(), **change}))
    code, out, err = cli(capsys, "run", path, "--store", tmp_path / "store")
    assert code == 2, (out, err)
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def test_a_regression_task_is_refused():
    raw = spec(interventions=[kd()])
    raw["task"], raw["probes"] = {"name": "teacher-student"}, ["loss"]
    with pytest.raises(LearnscopeError, match="distill distills class distributions"):
        Trainer(Experiment.model_validate(raw))
