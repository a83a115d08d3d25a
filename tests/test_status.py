"""Honest status: a run that fails records `failed` and why; a run whose
process died reads back as `interrupted`; `runs` and `show` tell them and
finished runs apart."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import Field

from learnscope import registry
from learnscope.cli import main
from learnscope.runner import run_experiment
from learnscope.spec import Experiment
from learnscope.store.sqlite import Store
from learnscope.train.hooks import Intervention, InterventionState

SPEC = {
    "task": {"name": "gaussian-mixture", "classes": 3, "dim": 4, "samples": 48, "test_samples": 16},
    "model": {"name": "mlp", "hidden": [8]},
    "recipe": {"optimizer": "sgd", "lr": 0.1, "steps": 20, "probe_every": 5, "probe_log_points": 0,
               "checkpoint_every": 5},
    "probes": ["accuracy"],
    "seeds": 2,
}


@registry.interventions.register("test-raise-at")
class RaiseAt(Intervention):
    """Test fault: a failure at one step, while the file `while_exists` exists
    (a transient cause, as a full disk or a lost node would be)."""

    at_step: int = Field(ge=1)
    while_exists: str

    def build(self, trainer):
        return _Raise(self)


class _Raise(InterventionState):
    def __init__(self, spec: RaiseAt):
        self.spec = spec

    def after_step(self, trainer) -> None:
        if trainer.step + 1 == self.spec.at_step and Path(self.spec.while_exists).exists():
            raise RuntimeError(f"boom at step {self.spec.at_step}")


def failing(tmp_path: Path) -> dict:
    cause = tmp_path / "cause"
    cause.touch()
    return {**SPEC, "interventions": [{"name": "test-raise-at", "at_step": 12, "while_exists": str(cause)}]}


def test_runs_and_show_tell_finished_failed_and_interrupted_apart(tmp_path, capsys):
    store = Store(tmp_path / "store")
    run_experiment(Experiment.model_validate(SPEC), store, run_id="ok")
    with pytest.raises(RuntimeError, match="boom at step 12"):
        run_experiment(Experiment.model_validate(failing(tmp_path)), store, run_id="bad")
    with store.hold("gone"):  # a process that records a run, then dies: its lock goes with it
        store.create_run("gone", "demo", SPEC, [0, 1])

    assert main(["runs", "--store", str(store.dir), "--json"]) == 0
    listed = {r["run_id"]: r for r in json.loads(capsys.readouterr().out)}
    assert {k: v["status"] for k, v in listed.items()} == {"ok": "finished", "bad": "failed", "gone": "interrupted"}
    assert listed["bad"]["reason"] == "RuntimeError: boom at step 12"
    assert "learnscope resume gone" in listed["gone"]["reason"]

    assert main(["show", "bad", "--store", str(store.dir), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["status"] == "failed" and shown["reason"] == "RuntimeError: boom at step 12"
    # what the failed run measured before it failed is kept: probes at steps 0, 5 and 10
    assert sorted(set(Store(store.dir).metrics("bad")["step"])) == [0, 5, 10]

    assert main(["runs", "--store", str(store.dir)]) == 0
    table = capsys.readouterr().out
    assert all(status in table for status in ("finished", "failed", "interrupted"))


def test_a_failed_run_can_be_resumed_from_its_last_checkpoint(tmp_path, capsys):
    """Once the cause is gone, resume carries a failed run on from its
    checkpoint at step 10 to the end."""
    store = Store(tmp_path / "store")
    with pytest.raises(RuntimeError):
        run_experiment(Experiment.model_validate(failing(tmp_path)), store, run_id="bad")
    (tmp_path / "cause").unlink()
    assert main(["resume", "bad", "--store", str(store.dir), "--no-report"]) == 0
    capsys.readouterr()
    record = Store(store.dir).get_run("bad")
    assert record.status == "finished" and record.reason is None
    steps = Store(store.dir).metrics("bad")["step"]
    assert sorted(set(steps)) == [0, 5, 10, 15, 20] and len(steps) == 5 * 2 * 2
