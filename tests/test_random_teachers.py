"""The random-teachers phenomenon: its arms (a teacher of 0 updates with an
initialization of its own, a student distilling it without labels at a
sharper teacher temperature, same data), its signature on constructed
metrics, and a small run of it through the runner."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from learnscope.catalog.random_teachers import GAIN, PROBE, STUDENT, TEACHER, RandomTeachers
from learnscope.results import ArmData
from learnscope.runner import run_phenomenon
from learnscope.store.base import RunRecord
from learnscope.store.sqlite import Store
from learnscope.train.trainer import Trainer


@pytest.mark.parametrize("quick", [True, False])
def test_the_teacher_is_a_random_initialization_the_student_distills_without_labels(quick):
    arms = {a.name: a for a in RandomTeachers().arms(quick)}
    assert list(arms) == [TEACHER, STUDENT]
    teacher, student = arms[TEACHER].experiment, arms[STUDENT].experiment
    assert teacher.recipe.steps == 0 and not teacher.interventions and teacher.init_stream == TEACHER
    assert student.recipe.steps > 0 and student.init_stream is None and arms[STUDENT].starts_from is None
    (kd,) = student.interventions
    assert kd.registry_name == "distill" and kd.teacher == f"@{TEACHER}" and kd.alpha == 1
    assert kd.teacher_temperature < kd.temperature  # the sharper teacher
    assert teacher.task == student.task and teacher.model == student.model and teacher.seeds == student.seeds
    assert student.recipe.is_probe_step(student.recipe.steps)


def test_the_arms_share_data_and_batches_not_initializations():
    arms = {a.name: a.experiment.derive({"seeds": [0, 1]}) for a in RandomTeachers().arms(quick=True)}
    teacher, student = Trainer(arms[TEACHER]), Trainer(arms[STUDENT])
    assert all(not torch.equal(p, q) for p, q in zip(teacher.params, student.params))
    for split in ("train", "test"):
        assert torch.equal(teacher.data.splits[split][0], student.data.splits[split][0])
    assert torch.equal(teacher.batch()[0], student.batch()[0])


def arm_data(name: str, probe: list[float], own: list[float] | None = None, step: int = 150) -> ArmData:
    rows = []
    for seed, value in enumerate(probe):
        rows.append(("r", seed, 0, PROBE, 0.5))
        rows.append(("r", seed, step, PROBE, value))
        rows.append(("r", seed, step, "accuracy/test", (own or [0.1] * len(probe))[seed]))
    record = RunRecord(f"r.{name}", "random-teachers", "experiment", "r", name, {}, list(range(len(probe))),
                       "finished", None, 0.0, None, "", "")
    return ArmData(record, pd.DataFrame(rows, columns=["run_id", "seed", "step", "name", "value"]))


def test_the_signature_reads_the_final_probe_gain_over_the_teacher():
    arms = {TEACHER: arm_data(TEACHER, [0.70, 0.70, 0.70], step=0),
            STUDENT: arm_data(STUDENT, [0.70 + GAIN + 0.05, 0.70 + GAIN - 0.01, 0.65])}
    verdict = RandomTeachers().check(arms)
    assert verdict.passed == [True, False, False]
    assert "ended -0.050 from it" in verdict.failures[2]
    assert verdict.measures["student over teacher"] == pytest.approx([GAIN + 0.05, GAIN - 0.01, -0.05])
    assert verdict.measures["teacher probe accuracy"] == pytest.approx([0.7] * 3)


def test_a_small_run_holds_and_the_student_never_learns_the_labels(tmp_path):
    store = Store(tmp_path / "store")
    run = run_phenomenon("random-teachers", quick=True, seeds=2, store=store)
    verdict = run.verdict
    assert verdict is not None and verdict.ok, verdict.line("random-teachers")
    # its own outputs are the teacher's random function: about chance among 10 classes
    assert all(v < 0.3 for v in verdict.measures["student own test accuracy"])
