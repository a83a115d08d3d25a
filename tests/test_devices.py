"""`--device` and `device=`: a device that is not here is bad input (one
line, exit 2, nothing recorded); `cpu` and `auto` run; the device is recorded
with the run, and resume continues on it unless told otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

import learnscope as ls
from helpers import cli, run_count
from learnscope.cli import main
from learnscope.errors import LearnscopeError
from learnscope.runner import recorded_device
from learnscope.store.sqlite import Store
from learnscope.train.devices import available, resolve_device
from learnscope.train.trainer import Trainer

pytestmark = pytest.mark.usefixtures("isolated")

TINY_SPEC = """\
task: {name: gaussian-mixture, classes: 3, dim: 4, samples: 64, test_samples: 32}
model: {name: mlp, hidden: [8]}
recipe: {optimizer: adamw, lr: 0.01, steps: 20, batch_size: 16, probe_every: 5, probe_log_points: 0,
         checkpoint_every: 10}
probes: [accuracy, loss]
seeds: 2
"""
NO_CUDA = not torch.cuda.is_available()


@pytest.fixture
def spec_file(tmp_path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_SPEC)
    return path


def rows(store_dir: Path, run_id: str) -> list[tuple]:
    frame = Store(store_dir).metrics(run_id)
    return sorted(frame[["seed", "step", "name", "value"]].itertuples(index=False, name=None))


def test_auto_and_names():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else
                                           "mps" if "mps" in available() else "cpu")
    assert resolve_device(None) == resolve_device("auto")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    with pytest.raises(LearnscopeError, match="unknown device 'tpu'; valid: auto, cpu, cuda, mps"):
        resolve_device("tpu")


@pytest.mark.skipif(not NO_CUDA, reason="this machine has CUDA")
@pytest.mark.parametrize("argv", [["run", "SPEC"], ["run", "grokking", "--quick", "--seeds", "2"],
                                  ["verify", "grokking", "--quick"], ["verify", "--all", "--quick"]])
def test_cuda_where_there_is_none_is_one_line_exit_2_and_records_nothing(capsys, tmp_path, spec_file, argv):
    store = tmp_path / "store"
    argv = [str(spec_file) if a == "SPEC" else a for a in argv]
    code, out, err = cli(capsys, *argv, "--device", "cuda", "--store", store)
    assert code == 2 and "Traceback" not in err, err
    assert err.count("\n") == 1 and err.startswith("error: device 'cuda' is not available") and "available: cpu" in err
    assert run_count(store) == 0


def test_cpu_and_auto_run_and_agree_with_the_default(capsys, tmp_path, spec_file):
    store = tmp_path / "store"
    for run_id, extra in (("default", []), ("cpu", ["--device", "cpu"]), ("auto", ["--device", "auto"])):
        code, _, err = cli(capsys, "run", spec_file, "--store", store, "--run-id", run_id, "--no-report", *extra)
        assert code == 0, err
        assert Store(store).get_run(run_id).status == "finished"
    assert recorded_device(Store(store), "cpu") == "cpu"
    assert recorded_device(Store(store), "auto") == str(resolve_device("auto"))
    assert rows(store, "default") == rows(store, "cpu")  # deterministic on a device
    if resolve_device("auto").type == "cpu":
        assert rows(store, "auto") == rows(store, "cpu")


def test_library_device(tmp_path):
    experiment = ls.Experiment.model_validate(yaml.safe_load(TINY_SPEC))
    run = ls.run_experiment(experiment, store=tmp_path / "s", run_id="lib", device="cpu")
    assert run.status == "finished" and recorded_device(run.store, "lib") == "cpu"
    assert Trainer(experiment, device="auto").device == resolve_device("auto")
    phenomenon = ls.run_phenomenon("grokking", quick=True, seeds=1, overrides=["recipe.steps=5"],
                                   store=tmp_path / "s", run_id="p", device="auto")
    assert phenomenon.status == "finished"
    if NO_CUDA:
        with pytest.raises(LearnscopeError, match="device 'cuda' is not available"):
            ls.run_experiment(experiment, store=tmp_path / "s", run_id="no", device="cuda")
        with pytest.raises(LearnscopeError, match="device 'cuda:1' is not available"):
            Trainer(experiment, device="cuda:1")
        assert [r.id for r in Store(tmp_path / "s").list_runs()] == ["p", "lib"]


def _fail_at(monkeypatch, step: int) -> None:
    original = Trainer.train_step

    def failing(self):
        if self.step == step:
            raise RuntimeError("power cut")
        original(self)

    monkeypatch.setattr(Trainer, "train_step", failing)


def test_resume_continues_on_the_recorded_device_or_the_one_given(capsys, tmp_path, spec_file, monkeypatch):
    store = tmp_path / "store"
    assert main(["run", str(spec_file), "--store", str(store), "--run-id", "whole", "--no-report"]) == 0
    with monkeypatch.context() as patch:
        _fail_at(patch, 14)
        with pytest.raises(RuntimeError, match="power cut"):
            main(["run", str(spec_file), "--store", str(store), "--run-id", "cut", "--no-report"])
    assert Store(store).get_run("cut").status == "failed"
    # as if it had trained on a GPU this machine does not have
    Store(store).add_event("cut", "device", {"device": "cuda"})
    if NO_CUDA:
        code, _, err = cli(capsys, "resume", "cut", "--store", store, "--no-report")
        assert code == 2 and err.count("\n") == 1 and "trained on cuda" in err and "--device" in err
        code, _, err = cli(capsys, "resume", "cut", "--store", store, "--no-report", "--device", "cuda")
        assert code == 2 and err.count("\n") == 1 and "device 'cuda' is not available" in err
        assert Store(store).get_run("cut").status == "failed"
    code, _, err = cli(capsys, "resume", "cut", "--store", store, "--no-report", "--device", "cpu")
    assert code == 0, err
    assert Store(store).get_run("cut").status == "finished"
    assert recorded_device(Store(store), "cut") == "cpu"
    assert rows(store, "cut") == rows(store, "whole")  # the checkpoint at step 10 carried on, bit for bit


def test_a_checkpoint_loads_onto_the_trainers_device(tmp_path):
    """The state a trainer writes (always on the host) loads into a trainer on
    any device: every tensor lands where that trainer keeps it."""
    experiment = ls.Experiment.model_validate({
        **yaml.safe_load(TINY_SPEC), "interventions": [{"name": "grokfast", "alpha": 0.9}]})
    source = Trainer(experiment, "cpu")
    for _ in range(3):
        source.train_step()
    tensors, meta = source.state()
    assert all(t.device.type == "cpu" for t in tensors.values())
    target = Trainer(experiment, "auto")
    target.load_state(tensors, meta)
    assert target.step == 3
    assert all(p.device == target.device for p in target.params)
    for state in target.optimizer.state.values():
        assert all(v.device == target.device for k, v in state.items() if k != "step")
    grokfast = target.interventions[0].state_dict()
    assert all(v.device == target.device for k, v in grokfast.items() if k != "count")
    target.train_step()  # and it trains on from there
