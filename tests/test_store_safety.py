"""A store that stays whole: several processes writing one store at once
lose and duplicate nothing and never see "database is locked"; a store that
cannot take a run (read-only, not enough free space) is refused before any
work, in one line."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from learnscope.cli import main
from learnscope.store.sqlite import Store

WRITERS = 4
STEPS = 150
# probed every step, 2 seeds x 8 metrics: 151 transactions of 16 rows per writer, all at once
SPEC = f"""\
task: {{name: gaussian-mixture, classes: 3, dim: 4, samples: 64, test_samples: 32}}
model: {{name: mlp, hidden: [8]}}
recipe: {{optimizer: sgd, lr: 0.1, steps: {STEPS}, probe_every: 1, probe_log_points: 0, checkpoint_every: 50}}
probes: [accuracy, loss, weight_norm, relative_weight_change, {{name: effective_rank, site: hidden.0}},
         {{name: kernel_alignment, site: hidden.0}}]
seeds: 2
"""
METRICS = 8


def run_rows(db: Path, run_id: str) -> list[tuple]:
    conn = sqlite3.connect(db)
    try:
        return sorted(conn.execute("SELECT seed, step, name, value FROM metric_rows WHERE run_id = ?", (run_id,)))
    finally:
        conn.close()


@pytest.mark.slow
def test_concurrent_writers_lose_and_duplicate_nothing(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    store = tmp_path / "store"  # does not exist yet: the writers also race to create it
    procs = [
        subprocess.Popen([sys.executable, "-m", "learnscope", "run", str(spec), "--store", str(store),
                          "--run-id", f"w{i}", "--no-report"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
        for i in range(WRITERS)
    ]
    outputs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-2000:]
        assert "locked" not in (out + err).lower()

    db = store / "runs.db"
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()
    rows = [run_rows(db, f"w{i}") for i in range(WRITERS)]
    for i, r in enumerate(rows):
        assert len(r) == (STEPS + 1) * 2 * METRICS, i  # nothing lost
        assert len({row[:3] for row in r}) == len(r), i  # nothing twice
        assert Store(store).get_run(f"w{i}").status == "finished"
    # the same spec and seeds: every writer recorded exactly the same numbers
    assert all(r == rows[0] for r in rows[1:])


OPEN_AT = """
import sys, time
from learnscope.store.sqlite import Store
start = float(sys.argv[2])
while time.time() < start:  # every process opens the new store at the same moment
    pass
Store(sys.argv[1]).create_run(sys.argv[3], "x", {}, [0])
"""


def test_processes_opening_a_new_store_at_once_all_succeed(tmp_path):
    """Six processes opening one new store at the same moment all succeed. (The
    schema is made in one transaction: a process that once saw another's tables
    before their version stamp refused the store as of an unknown version.)"""
    store = tmp_path / "store"
    start = time.time() + 2
    procs = [subprocess.Popen([sys.executable, "-c", OPEN_AT, str(store), str(start), f"r{i}"],
                              stderr=subprocess.PIPE, text=True) for i in range(6)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err[-2000:]
    assert sorted(r.id for r in Store(store).list_runs()) == [f"r{i}" for i in range(6)]


def test_read_only_store_is_refused_before_any_work(tmp_path, capsys):
    store = tmp_path / "store"
    Store(store).close()
    locked = _make_read_only(store)
    try:
        code = main(["run", "grokking", "--quick", "--store", str(store), "--no-report"])
        err = capsys.readouterr().err
    finally:
        locked.undo()
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert str(store) in err and ("not writable" in err or "cannot" in err)
    assert Store(store).list_runs() == []


def test_store_without_room_is_refused_before_any_work(tmp_path, capsys):
    """A run whose metric rows alone would outgrow the disk (10^10 steps,
    probed every step) is refused for its size, not started."""
    store = tmp_path / "store"
    code = main(["run", "grokking", "--quick", "--store", str(store), "--no-report",
                 "--set", "recipe.steps=10000000000", "--set", "recipe.probe_every=1"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "MiB free and this run needs about" in err, err
    assert Store(store).list_runs() == []


class _ReadOnly:
    def __init__(self, path: Path, how: str):
        self.path, self.how = path, how

    def undo(self) -> None:
        if self.how == "chattr":
            subprocess.run(["chattr", "-i", str(self.path)], check=True)
        else:
            self.path.chmod(0o755)


def _make_read_only(path: Path) -> _ReadOnly:
    """Make a directory read-only for real: chmod for an ordinary user; root
    ignores modes, so for root the immutable attribute (chattr +i)."""
    if os.geteuid() != 0:
        path.chmod(0o555)
        return _ReadOnly(path, "chmod")
    done = subprocess.run(["chattr", "+i", str(path)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot make a directory read-only here as root: {done.stderr.decode().strip()}")
    return _ReadOnly(path, "chattr")
