"""Hand-made families of bad input around the store and the run's lifetime,
each refused by its mechanism in one line with exit 2, nothing lost:
damaged and emptied databases (one path to SQLite names the file), run ids
that could not name files (checked at the door, before a store is made),
read-only stores (reading works, as a user without write access, not as
root), runs whose every seed diverged (failed, not finished), Ctrl-C (the
exact resume command); and a new user's first minute (--version, `latest`,
unique prefixes)."""

from __future__ import annotations

import gc
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from helpers import cli
from learnscope.store.sqlite import Store

pytestmark = pytest.mark.usefixtures("isolated")

SPEC = """\
task: {name: gaussian-mixture, classes: 3, dim: 4, samples: 64, test_samples: 32}
model: {name: mlp, hidden: [8]}
recipe: {optimizer: sgd, lr: 0.1, steps: 20, probe_every: 10, probe_log_points: 0, checkpoint_every: 10}
probes: [accuracy, loss]
seeds: 2
"""


@pytest.fixture
def spec_file(tmp_path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(SPEC)
    return path


@pytest.fixture
def stored(spec_file, tmp_path, capsys) -> Path:
    """A store holding one finished run, 'tiny-a', with its checkpoint."""
    store = tmp_path / "store"
    code, _, err = cli(capsys, "run", spec_file, "--store", store, "--run-id", "tiny-a", "--no-report")
    assert code == 0, err
    return store


def one_line_refusal(code: int, err: str, expected: str) -> None:
    assert code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert expected in err, err


# ------------------------------------------------------------------ damaged databases


COMMANDS = [["show", "tiny-a"], ["runs"], ["resume", "tiny-a"], ["report", "tiny-a"], ["export", "tiny-a"],
            ["compare", "tiny-a", "tiny-a"], ["run", "SPEC"]]


@pytest.mark.parametrize("offset", [0, 4096, 8192], ids=["header", "page-2", "page-3"])
def test_damaged_database_is_one_line(offset, stored, spec_file, capsys):
    """Zeros over the header damage every access; garbage over a later page
    damages the queries that read it (others may still answer, as SQLite
    reads only the pages a query needs): each command either answers or
    names the damaged file in one line, and nothing is written over it."""
    db = stored / "runs.db"
    gc.collect()  # close the connections runs of this process left: SQLite shares their WAL index in-process
    Store(stored).close()  # the WAL checkpointed into the file, as after any clean exit
    for leftover in ("runs.db-wal", "runs.db-shm"):
        (stored / leftover).unlink(missing_ok=True)
    before = db.read_bytes()
    with open(db, "r+b") as f:
        f.seek(offset)
        f.write(os.urandom(4096) if offset else b"\x00" * 4096)
    damaged = db.read_bytes()
    refused = []
    for command in COMMANDS:
        argv = [str(spec_file) if a == "SPEC" else a for a in command]
        code, _, err = cli(capsys, *argv, "--store", stored, *(["--no-report"] if command[0] == "run" else []))
        if code != 0 or offset == 0:
            one_line_refusal(code, err, f"the store database {db} is damaged")
            assert "PRAGMA quick_check" in err and "copy" in err
            refused.append(command[0])
    assert refused, "garbage over a page of the database went unnoticed by every command"
    assert db.read_bytes() == damaged != before  # nothing written over what is left


def test_emptied_database_beside_checkpoints_is_named(stored, spec_file, capsys):
    (stored / "runs.db").write_bytes(b"")
    for leftover in ("runs.db-wal", "runs.db-shm"):
        (stored / leftover).unlink(missing_ok=True)
    for argv in (["runs"], ["show", "tiny-a"], ["run", str(spec_file)]):
        code, _, err = cli(capsys, *argv, "--store", stored)
        one_line_refusal(code, err, "is empty (0 bytes) while checkpoints of 1 run(s) sit beside it (tiny-a)")
    assert (stored / "runs.db").stat().st_size == 0  # not turned into a new, empty store


# ------------------------------------------------------------------ identifiers


@pytest.mark.parametrize("run_id", ["a/b", "../escape", "..", "", ".hidden", "x..y", "has space", "tab\there",
                                    "é", "-dash", "x" * 201])
def test_run_ids_that_cannot_name_files_are_refused_at_the_door(run_id, spec_file, tmp_path, capsys):
    store = tmp_path / "fresh"
    code, _, err = cli(capsys, "run", spec_file, "--store", store, "--run-id", run_id, "--no-report")
    one_line_refusal(code, err, "is not allowed: a run id holds letters, digits, '.', '_' and '-'")
    assert not store.exists()  # refused before a store was made
    code, _, err = cli(capsys, "sweep", spec_file, "--grid", "recipe.lr=0.1", "--store", store, "--run-id", run_id)
    one_line_refusal(code, err, "is not allowed")
    assert not store.exists()


def test_generated_ids_are_valid_whatever_the_spec_file_is_called(tmp_path, capsys):
    odd = tmp_path / "my spec (v2).yaml"
    odd.write_text(SPEC)
    code, out, err = cli(capsys, "run", odd, "--store", tmp_path / "store", "--no-report")
    assert code == 0, err
    assert [r.id.startswith("my-spec-v2-") for r in Store(tmp_path / "store").list_runs()] == [True]


def test_latest_and_unique_prefixes(stored, spec_file, capsys):
    code, _, err = cli(capsys, "run", spec_file, "--store", stored, "--run-id", "tiny-b", "--no-report")
    assert code == 0, err
    code, out, _ = cli(capsys, "show", "latest", "--store", stored)
    assert code == 0 and "tiny-b" in out
    code, out, _ = cli(capsys, "show", "tiny-a", "--store", stored)
    assert code == 0 and "tiny-a" in out
    code, out, _ = cli(capsys, "compare", "tiny-a", "tiny-b", "--store", stored)
    assert code == 0
    code, _, err = cli(capsys, "show", "tiny-", "--store", stored)
    one_line_refusal(code, err, "'tiny-' begins 2 run ids")
    code, _, err = cli(capsys, "show", "TINY-a", "--store", stored)  # prefixes are case-sensitive
    one_line_refusal(code, err, "unknown run id 'TINY-a'")
    code, out, _ = cli(capsys, "export", "tiny-b", "--store", stored, "-o", "out/b.csv")
    assert code == 0 and Path("out/b.csv").exists()


# ------------------------------------------------------------------ read-only stores


@contextmanager
def read_only(root: Path):
    """`root` and everything in it read-only for this process: root writes
    through permission bits, not through the immutable attribute."""
    paths = [root, *root.rglob("*")]
    if os.geteuid() == 0:
        if shutil.which("chattr") is None:
            pytest.skip("as root, a read-only store needs chattr (the immutable attribute)")
        done = subprocess.run(["chattr", "+i", *map(str, paths)], capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"this filesystem has no immutable attribute: {done.stderr.strip()}")
    else:
        for path in paths:
            path.chmod(0o555 if path.is_dir() else 0o444)
    try:
        yield
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", *map(str, paths)], capture_output=True)
        else:
            for path in paths:
                path.chmod(0o755 if path.is_dir() else 0o644)


def test_read_only_store_reads(stored, tmp_path, capsys):
    store, elsewhere = tmp_path / "shared", tmp_path / "elsewhere"
    gc.collect()  # runs of this process leave no connection open on the original
    conn = sqlite3.connect(stored / "runs.db")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    shutil.copytree(stored, store, ignore=shutil.ignore_patterns("runs.db-wal", "runs.db-shm"))
    elsewhere.mkdir()
    with read_only(store):
        assert not os.access(store, os.W_OK)
        for argv in (["runs"], ["show", "tiny-a"], ["show", "latest", "--json"],
                     ["export", "tiny-a", "-o", elsewhere / "a.csv"], ["report", "tiny-a", "-o", elsewhere / "rep"],
                     ["compare", "tiny-a", "tiny-a"], ["runs", "--json"]):
            code, _, err = cli(capsys, *argv, "--store", store.relative_to(Path.cwd()))  # a relative path too
            assert code == 0, (argv, err)
        assert (elsewhere / "a.csv").exists() and (elsewhere / "rep" / "index.html").exists()
        code, _, err = cli(capsys, "resume", "tiny-a", "--store", store)
        one_line_refusal(code, err, "already finished")
        code, _, err = cli(capsys, "report", "tiny-a", "--store", store)
        one_line_refusal(code, err, "pass -o DIR")
        code, _, err = cli(capsys, "run", spec_again(tmp_path), "--store", store, "--no-report")
        one_line_refusal(code, err, "is not writable")
        assert [r.id for r in Store(store, create=False).list_runs()] == ["tiny-a"]


def spec_again(tmp_path: Path) -> Path:
    path = tmp_path / "again.yaml"
    path.write_text(SPEC)
    return path


# ------------------------------------------------------------------ statuses


def test_every_seed_diverged_is_a_failed_run(spec_file, tmp_path, capsys):
    store = tmp_path / "store"
    code, _, err = cli(capsys, "run", spec_file, "--store", store, "--run-id", "hot", "--set", "recipe.lr=1e30")
    assert code == 1 and "Traceback" not in err, err
    assert err.splitlines()[-1].startswith("error: run hot failed: every seed diverged (the loss became NaN or Inf"), err
    record = Store(store).get_run("hot")
    assert record.status == "failed" and (record.reason or "").startswith("every seed diverged")
    code, out, err = cli(capsys, "verify", "grokking", "--quick", "--store", store, "--seeds", "2",
                         "--set", "recipe.lr=1e30")
    assert code == 1, err
    assert "verified grokking: FAIL (0/0 seeds hold, 0 needed; every seed diverged in some arm (seeds [0, 1]" in out


def test_ctrl_c_prints_the_resume_command(tmp_path):
    store = tmp_path / "store"
    spec = tmp_path / "long.yaml"
    spec.write_text(SPEC.replace("steps: 20", "steps: 1000000").replace("checkpoint_every: 10",
                                                                        "checkpoint_every: 200"))
    process = subprocess.Popen([sys.executable, "-m", "learnscope", "run", str(spec), "--store", str(store),
                                "--run-id", "long"], stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (store / "checkpoints" / "long").is_dir():
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert f"continue it with: learnscope resume long --store {store}" in err.splitlines()[-1], err
    assert Store(store).get_run("long").status == "interrupted"


@pytest.mark.parametrize("after", ["BEGIN IMMEDIATE", "INSERT INTO metrics"])
def test_a_ctrl_c_inside_a_write_leaves_the_store_writable(after, stored, monkeypatch):
    """The interrupt lands just after a statement of a write returns (where CI
    once caught one): that write is rolled back whole, and the status the
    interrupt handler writes next goes through."""
    from learnscope.store import sqlite as store_sqlite

    store = Store(stored)
    before = len(store.metrics("tiny-a"))
    real_execute, real_many = store_sqlite.GuardedConnection.execute, store_sqlite.GuardedConnection.executemany
    armed = [True]

    def interrupt_after(statement: str) -> None:
        if armed[0] and statement.startswith(after):
            armed[0] = False
            raise KeyboardInterrupt

    def execute(self, sql, parameters=()):
        rows = real_execute(self, sql, parameters)
        interrupt_after(sql)
        return rows

    def executemany(self, sql, rows):
        real_many(self, sql, rows)
        interrupt_after(sql)

    monkeypatch.setattr(store_sqlite.GuardedConnection, "execute", execute)
    monkeypatch.setattr(store_sqlite.GuardedConnection, "executemany", executemany)
    with pytest.raises(KeyboardInterrupt):
        store.write_metrics("tiny-a", 10_000, [0, 1], {"loss/train": [1.0, 2.0]})
    assert not armed[0]
    store.set_status("tiny-a", "interrupted", "interrupted by the user")
    again = Store(stored)
    assert again.get_run("tiny-a").status == "interrupted"
    assert len(again.metrics("tiny-a")) == before  # the interrupted write left nothing


# ------------------------------------------------------------------ the first minute


def test_version_names_learnscope_torch_and_python(capsys):
    from importlib.metadata import version

    code, out, _ = cli(capsys, "--version")
    assert code == 0
    assert out.strip() == (f"learnscope {version('learnscope')}, torch {version('torch')}, "
                           f"Python {sys.version.split()[0]}")
