"""Exact resume after a crash. A run is started in a subprocess and killed
with SIGKILL (through the LEARNSCOPE_FAULT failpoints, so each kill lands
where it is meant to: inside a step, inside a metric transaction, while a
checkpoint is written, between its rename and its record, between arms).
After each kill the store passes SQLite's integrity check, the run reads
back as interrupted, the rows before its last checkpoint are all there
once; `learnscope resume` then finishes it with every metric row equal, bit
for bit, to an uninterrupted run's."""

from __future__ import annotations

import hashlib
import json
import pickle
import signal
import sqlite3
from pathlib import Path

import pytest

from helpers import learnscope
from learnscope.cli import main
from learnscope.store.sqlite import Store

SPEC = """\
task: {name: gaussian-mixture, classes: 3, dim: 6, samples: 96, test_samples: 32}
model: {name: mlp, hidden: [16]}
recipe: {optimizer: adamw, lr: 0.01, weight_decay: 0.1, steps: 60, batch_size: 16, probe_every: 5,
         probe_log_points: 0, checkpoint_every: 10}
interventions: [{name: grokfast, alpha: 0.9}]
probes: [accuracy, loss, weight_norm]
seeds: 3
"""
STEPS, CHECKPOINT_EVERY = 60, 10

# (failpoint, n-th time reached): 13 probe writes (steps 0, 5, ..., 60), 6 checkpoints (10, ..., 60)
KILLS = [
    ("step", 3),  # inside an update, before the first checkpoint: resumes from the start
    ("step", 34),  # inside an update, between checkpoints
    ("step", 60),  # inside the last update
    ("probe-write", 1),  # inside the first metric transaction
    ("probe-write", 9),  # inside a metric transaction mid-run
    ("probe-write", 13),  # inside the last one
    ("checkpoint-write", 1),  # half the first checkpoint file written
    ("checkpoint-write", 4),
    ("checkpoint-rename", 2),  # renamed into place, not yet recorded
    ("checkpoint-record", 3),  # recorded, the previous file not yet removed
    ("checkpoint-record", 6),  # the last checkpoint recorded, the run not yet marked finished
]


def metric_rows(store_dir: Path, run_id: str) -> list[tuple]:
    """Every metric row of a run and its arms, as (run, seed, step, name, value), sorted."""
    conn = sqlite3.connect(store_dir / "runs.db")
    try:
        return sorted(conn.execute(
            "SELECT run_id, seed, step, name, value FROM metric_rows WHERE run_id = ? OR run_id LIKE ?",
            (run_id, f"{run_id}.%")))
    finally:
        conn.close()


def integrity(store_dir: Path) -> str:
    conn = sqlite3.connect(store_dir / "runs.db")
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()


def recorded_checkpoint(store: Store, run_id: str) -> tuple[int, Path] | None:
    found = [a for a in store.artifacts(run_id) if a["kind"] == "checkpoint"]
    if not found:
        return None
    path = store.dir / found[-1]["path"]
    return int(path.stem.split("-")[1]), path


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("spec") / "tiny.yaml"
    path.write_text(SPEC)
    return path


@pytest.fixture(scope="module")
def reference(spec_file, tmp_path_factory) -> list[tuple]:
    """The uninterrupted run, as a subprocess like the killed ones."""
    store = tmp_path_factory.mktemp("reference")
    done = learnscope("run", spec_file, "--store", store, "--run-id", "r", "--no-report")
    assert done.returncode == 0, done.stderr
    rows = metric_rows(store, "r")
    assert len(rows) == 3 * (STEPS // 5 + 1) * 5  # seeds x probe steps x metrics, each once
    return rows


def killed_run(spec_file: Path, store_dir: Path, fault: str, run_id: str = "k") -> Store:
    done = learnscope("run", spec_file, "--store", store_dir, "--run-id", run_id, "--no-report", fault=fault)
    assert done.returncode == -signal.SIGKILL, (fault, done.returncode, done.stderr[-2000:])
    assert integrity(store_dir) == "ok"
    store = Store(store_dir)
    record = store.get_run(run_id)
    assert record.status == "interrupted" and f"learnscope resume {run_id}" in record.reason
    return store


@pytest.mark.slow
@pytest.mark.parametrize("point,count", KILLS, ids=[f"{p}-{n}" for p, n in KILLS])
def test_killed_run_resumes_bit_for_bit(point, count, spec_file, reference, tmp_path, capsys):
    store_dir = tmp_path / "store"
    store = killed_run(spec_file, store_dir, f"{point}:{count}")

    # the rows before the last checkpoint survive, each once
    checkpoint = recorded_checkpoint(store, "k")
    resume_step = checkpoint[0] if checkpoint else 0
    rows = [(r[0].replace("k", "r", 1), *r[1:]) for r in metric_rows(store_dir, "k")]
    assert [r for r in rows if r[2] < resume_step] == [r for r in reference if r[2] < resume_step]
    assert len(set(r[:4] for r in rows)) == len(rows)

    assert main(["resume", "k", "--store", str(store_dir), "--no-report"]) == 0
    capsys.readouterr()
    resumed = [(r[0].replace("k", "r", 1), *r[1:]) for r in metric_rows(store_dir, "k")]
    assert resumed == reference  # every row, every value, bit for bit; none twice
    assert Store(store_dir).get_run("k").status == "finished"
    assert integrity(store_dir) == "ok"
    # exactly one checkpoint remains, the recorded one (at the last step), and it verifies
    step, path = recorded_checkpoint(Store(store_dir), "k")
    assert step == STEPS and list(path.parent.iterdir()) == [path]
    sha = [a["sha256"] for a in Store(store_dir).artifacts("k") if a["kind"] == "checkpoint"]
    assert sha == [hashlib.sha256(path.read_bytes()).hexdigest()]


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["arm-finished:1", "step:62"], ids=["between-arms", "inside-second-arm"])
def test_killed_phenomenon_resumes_bit_for_bit(fault, tmp_path, capsys):
    """A phenomenon is several arms in turn: finished arms stay, the stopped
    one resumes from its checkpoint, the rest run, the signature is checked."""
    args = ["grokking", "--quick", "--seeds", "2", "--set", "recipe.steps=40", "--set", "recipe.checkpoint_every=15",
            "--set", "recipe.probe_every=5", "--set", "recipe.probe_log_points=0", "--no-report"]
    reference_dir, killed_dir = tmp_path / "reference", tmp_path / "killed"
    assert learnscope("run", *args, "--store", reference_dir, "--run-id", "p").returncode == 0
    done = learnscope("run", *args, "--store", killed_dir, "--run-id", "p", fault=fault)
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    assert integrity(killed_dir) == "ok"
    statuses = {r.arm: r.status for r in Store(killed_dir).children("p")}
    assert statuses["grokking"] == "finished" and Store(killed_dir).get_run("p").status == "interrupted"
    assert statuses.get("no-weight-decay", "interrupted") == "interrupted"

    assert main(["resume", "p", "--store", str(killed_dir), "--no-report", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert payload["status"] == "finished"
    assert metric_rows(killed_dir, "p") == metric_rows(reference_dir, "p")
    verdicts = [Store(d).events("p", "signature")[-1]["detail"] for d in (reference_dir, killed_dir)]
    assert verdicts[0] == verdicts[1]


# ---------------------------------------------------------------- what resume refuses


@pytest.fixture
def interrupted(spec_file, tmp_path) -> tuple[Path, Path]:
    """A run killed after its checkpoint at step 30: (store dir, checkpoint file)."""
    store_dir = tmp_path / "store"
    store = killed_run(spec_file, store_dir, "step:34")
    step, path = recorded_checkpoint(store, "k")
    assert step == 30
    return store_dir, path


def assert_refused_untouched(store_dir: Path, checkpoint: Path, capsys, *expected: str) -> None:
    before = (checkpoint.read_bytes(), metric_rows(store_dir, "k"))
    code = main(["resume", "k", "--store", str(store_dir)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err
    for text in expected:
        assert text in err
    assert (checkpoint.read_bytes(), metric_rows(store_dir, "k")) == before  # nothing overwritten
    assert Store(store_dir).get_run("k").status == "interrupted"


@pytest.mark.slow
def test_tampered_checkpoint_is_refused(interrupted, capsys):
    store_dir, checkpoint = interrupted
    data = bytearray(checkpoint.read_bytes())
    data[-5] ^= 0xFF  # one flipped byte in a parameter
    checkpoint.write_bytes(bytes(data))
    assert_refused_untouched(store_dir, checkpoint, capsys, "sha256", str(checkpoint))


@pytest.mark.slow
def test_truncated_checkpoint_is_refused(interrupted, capsys):
    store_dir, checkpoint = interrupted
    checkpoint.write_bytes(checkpoint.read_bytes()[: checkpoint.stat().st_size // 3])
    assert_refused_untouched(store_dir, checkpoint, capsys, "truncated or modified")


@pytest.mark.slow
def test_resume_never_unpickles(interrupted, monkeypatch, capsys):
    store_dir, _ = interrupted

    def refuse(*args, **kwargs):
        raise AssertionError("a checkpoint was unpickled")

    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr("torch.load", refuse)
    assert main(["resume", "k", "--store", str(store_dir), "--no-report"]) == 0


@pytest.mark.slow
def test_resume_refuses_a_run_another_process_owns(interrupted, capsys):
    store_dir, checkpoint = interrupted
    with Store(store_dir).hold("k"):
        code = main(["resume", "k", "--store", str(store_dir)])
        err = capsys.readouterr().err
        assert code == 2 and "is being run right now by process" in err
        assert Store(store_dir).get_run("k").status == "running"  # owned: not interrupted
    assert Store(store_dir).get_run("k").status == "interrupted"


def test_resume_refuses_finished_and_unknown_runs(spec_file, tmp_path, capsys):
    store_dir = tmp_path / "store"
    assert main(["run", str(spec_file), "--store", str(store_dir), "--run-id", "done", "--no-report",
                 "--set", "recipe.steps=5"]) == 0
    capsys.readouterr()
    for run_id, expected in (("done", "already finished"), ("nope", "unknown run id 'nope'")):
        code = main(["resume", run_id, "--store", str(store_dir)])
        err = capsys.readouterr().err
        assert code == 2 and expected in err and err.count("\n") == 1, err
