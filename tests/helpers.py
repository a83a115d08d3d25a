"""What several test modules call: the CLI in-process, the store's run
count, the CLI in a subprocess with a fault armed."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from learnscope import faults
from learnscope.cli import main


def cli(capsys, *argv) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `learnscope ARGV` run in this process."""
    capsys.readouterr()  # drop anything printed before
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def run_count(store_dir: Path) -> int:
    """Runs recorded in a store directory (0 if it has no database)."""
    db = Path(store_dir) / "runs.db"
    if not db.exists():
        return 0
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
    finally:
        conn.close()


def learnscope(*args, fault: str | None = None) -> subprocess.CompletedProcess:
    """`python -m learnscope ARGS` in a subprocess, with `fault` armed (learnscope.faults)."""
    env = {k: v for k, v in os.environ.items() if k != faults.ENV_VAR}
    if fault:
        env[faults.ENV_VAR] = fault
    return subprocess.run([sys.executable, "-m", "learnscope", *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=300)


def assert_resumes_exactly(build, first_steps: int = 3) -> None:
    """A run cut after `first_steps` updates and resumed from its state ends
    where the uninterrupted run does; `build()` makes a fresh trainer of it."""
    import torch

    whole = build()
    whole.run()
    first = build()
    for state in first.interventions:
        state.on_start(first)  # as run() begins
    for _ in range(first_steps):
        first.train_step()
    resumed = build()
    resumed.load_state(*first.state())
    resumed.run()
    for p, q in zip(whole.params, resumed.params):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
