"""The Ray backend, on a real local Ray (one instance for the test session,
`ray.init(num_cpus=2)`; nothing mocked): trials as Ray tasks whose workers
never open SQLite, rows identical to the local backend's bit for bit, a
worker killed mid-trial retried from the last checkpoint the driver holds,
and a sweep stopped on one backend resumed on the other."""

from __future__ import annotations

import json
import signal
import sqlite3
import sys
from pathlib import Path

import pytest

from helpers import cli, learnscope, run_count
from learnscope.runner import run_experiment
from learnscope.spec import Experiment, parse_value
from learnscope.store.memory import MemoryStore
from learnscope.store.sqlite import Store
from learnscope.sweep import resume_sweep, run_sweep

ray = pytest.importorskip("ray")

# One xdist worker runs this module, so the session starts one Ray instance.
pytestmark = pytest.mark.xdist_group("ray")

TINY_SPEC = """\
task: {name: gaussian-mixture, classes: 3, dim: 4, samples: 64, test_samples: 32}
model: {name: mlp, hidden: [8]}
recipe: {optimizer: sgd, lr: 0.1, steps: 20, probe_every: 5, probe_log_points: 0, checkpoint_every: 5}
probes: [accuracy, loss]
seeds: 2
"""
LRS = "recipe.lr=0.03,0.1,0.3"


@pytest.fixture(scope="session")
def local_ray():
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture
def spec_file(tmp_path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_SPEC)
    return path


def rows(store_dir: Path, sweep_id: str) -> list[tuple]:
    """Every metric row of a sweep's trials, with the sweep's id cut from the run id."""
    conn = sqlite3.connect(Path(store_dir) / "runs.db")
    try:
        found = conn.execute("SELECT run_id, seed, step, name, value FROM metric_rows WHERE run_id LIKE ?",
                             (f"{sweep_id}.%",))
        return sorted((run_id[len(sweep_id):], *rest) for run_id, *rest in found)
    finally:
        conn.close()


def verdicts(store: Store, sweep_id: str) -> list[dict]:
    """The trials' verdicts in trial order (on Ray, trials start in any order)."""
    trials = sorted(store.children(sweep_id), key=lambda child: int(child.id.rsplit(".t", 1)[1]))
    return [e["detail"] for child in trials for e in store.events(child.id, "signature")]


def test_ray_trials_equal_local_trials(local_ray, spec_file, tmp_path):
    store = tmp_path / "store"
    local = run_sweep(str(spec_file), [LRS], seeds=2, store=str(store), run_id="L")
    remote = run_sweep(str(spec_file), [LRS], seeds=2, store=str(store), run_id="R", backend="ray")
    assert local.status == remote.status == "finished"
    assert [t.status for t in remote.trials()] == ["finished"] * 3
    assert len(rows(store, "R")) == 3 * 2 * 5 * 4  # trials × seeds × probe steps × metrics
    assert rows(store, "R") == rows(store, "L")
    st = Store(store)
    attempts = [st.events(f"R.t{i}", "trial-attempt") for i in range(3)]
    assert all(len(a) == 1 and a[0]["detail"]["attempt"] == 1 for a in attempts)
    assert not any(st.events(f"R.t{i}", "trial-retry") for i in range(3))
    # the driver holds each trial's last checkpoint, as after a local run
    assert all(st.checkpoint_data(f"R.t{i}") is not None for i in range(3))


def test_ray_phenomenon_trials_equal_local(local_ray, tmp_path):
    """A phenomenon whose arms start from another arm's checkpoint (@original):
    every arm, the chain and the verdict come back from the workers."""
    store = tmp_path / "store"
    grid = ["gradient-ascent:recipe.lr=0.01,0.03"]
    local = run_sweep("ga-collapse", grid, seeds=2, quick=True, store=str(store), run_id="L")
    remote = run_sweep("ga-collapse", grid, seeds=2, quick=True, store=str(store), run_id="R", backend="ray")
    assert local.status == remote.status == "finished"
    assert rows(store, "R") == rows(store, "L") and rows(store, "R")
    st = Store(store)
    assert verdicts(st, "R") == verdicts(st, "L") and len(verdicts(st, "R")) == 2
    assert [c.arm for c in st.children("R.t0")] == [c.arm for c in st.children("L.t0")]


def test_killed_worker_is_retried_from_the_last_checkpoint(local_ray, spec_file, tmp_path, monkeypatch):
    """Each worker kills itself (SIGKILL) right after sending its third
    checkpoint, at step 15 of 20; Ray retries the task, which resumes there."""
    store = tmp_path / "store"
    reference = run_sweep(str(spec_file), ["recipe.lr=0.1,0.3"], store=str(store), run_id="L")
    monkeypatch.setenv("LEARNSCOPE_FAULT", "worker-checkpoint:3")
    swept = run_sweep(str(spec_file), ["recipe.lr=0.1,0.3"], store=str(store), run_id="K", backend="ray")
    assert reference.status == swept.status == "finished"
    st = Store(store)
    for trial in ("K.t0", "K.t1"):
        retries = st.events(trial, "trial-retry")
        assert retries, st.events(trial)
        assert retries[0]["detail"]["attempt"] == 2 and retries[0]["detail"]["checkpoints"] == {trial: 15}
        pids = [e["detail"]["pid"] for e in st.events(trial, "trial-attempt")]
        assert len(set(pids)) == len(pids) >= 2  # each attempt in a fresh worker process
    assert rows(store, "K") == rows(store, "L")


def test_sweep_killed_locally_resumes_on_ray(local_ray, spec_file, tmp_path):
    """The driver killed inside the second trial (local backend); resumed on
    Ray, the stopped trial goes on from the checkpoint the store holds."""
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    args = ["sweep", spec_file, "--grid", LRS, "--run-id", "S", "--no-report"]
    done = learnscope(*args, "--store", reference)
    assert done.returncode == 0, done.stderr[-2000:]
    done = learnscope(*args, "--store", killed, fault="step:33")
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    assert Store(killed).get_run("S.t1").status == "interrupted"
    resumed = resume_sweep("S", str(killed), backend="ray")
    assert resumed.status == "finished"
    assert rows(killed, "S") == rows(reference, "S")


def test_journal_replayed_equals_writing_the_store(tmp_path):
    """What a worker does, without Ray: train into memory, replay the journal
    into a store; the store then holds what training into it directly gives."""
    experiment = Experiment.model_validate(parse_value(json.dumps(
        {"task": {"name": "gaussian-mixture", "classes": 3, "dim": 4, "samples": 64, "test_samples": 32},
         "model": {"name": "mlp", "hidden": [8]}, "probes": ["accuracy", "loss"], "seeds": 2,
         "recipe": {"steps": 12, "probe_every": 4, "probe_log_points": 0, "checkpoint_every": 4}})))
    direct, replayed = Store(tmp_path / "direct"), Store(tmp_path / "replayed")
    run_experiment(experiment, direct, run_id="r")
    memory = MemoryStore()
    run_experiment(experiment, memory, run_id="r")
    assert {op for op, _ in memory.journal} >= {"create_run", "write_metrics", "save_checkpoint", "set_status"}
    replayed.replay(memory.journal)
    assert replayed.metrics("r").equals(direct.metrics("r"))
    assert replayed.get_run("r").status == "finished"
    assert replayed.checkpoint_data("r")[0] == direct.checkpoint_data("r")[0]  # type: ignore[index]
    with pytest.raises(Exception, match="not a store write"):
        replayed.replay([("close", {})])


@pytest.mark.parametrize("argv,expected", [
    (["--backend", "slurm"], "unknown sweep backend 'slurm'; valid: local, ray"),
    (["--workers", "2"], "--address and --workers apply to --backend ray"),
    (["--backend", "ray", "--address", "auto", "--workers", "2"], "--workers sizes a local Ray instance"),
    (["--backend", "ray", "--workers", "0"], "give at least 1 worker"),
])
def test_bad_backend_options(argv, expected, spec_file, tmp_path, capsys):
    store = tmp_path / "store"
    code, _, err = cli(capsys, "sweep", spec_file, "--grid", LRS, *argv, "--store", store)
    assert code == 2 and err.count("\n") == 1 and expected in err, err
    assert run_count(store) == 0


@pytest.mark.slow
def test_cli_ray_sweep_on_its_own_local_instance(spec_file, tmp_path):
    """The README's command, as a user types it: a fresh process starts its own
    two-CPU Ray instance; its trials' rows equal the local backend's."""
    store = tmp_path / "store"
    common = ["sweep", spec_file, "--grid", LRS, "--seeds", "2", "--store", store, "--no-report", "--json"]
    done = learnscope(*common, "--backend", "ray", "--workers", "2", "--run-id", "R")
    assert done.returncode == 0, done.stderr[-2000:]
    payload = json.loads(done.stdout.strip().splitlines()[-1])
    assert payload["sweep_id"] == "R" and [t["status"] for t in payload["trials"]] == ["finished"] * 3
    assert learnscope(*common, "--run-id", "L").returncode == 0
    assert rows(store, "R") == rows(store, "L")
    assert Store(store).get_run("R").spec["backend"] == "ray"
    assert sys.executable  # the subprocess ran this interpreter's learnscope
