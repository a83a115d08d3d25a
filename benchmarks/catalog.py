"""5. The catalog: wall time of `learnscope verify --all --quick`, as a user
runs it (a fresh process, default threads, a temporary store)."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time


def run(log=print) -> dict:
    with tempfile.TemporaryDirectory() as store:
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "learnscope", "verify", "--all", "--quick", "--store", store],
            capture_output=True, text=True,
        )
        seconds = time.perf_counter() - start
    last = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr.strip()[-200:]
    log(f"  verify --all --quick: {seconds:.0f} s, exit {done.returncode}: {last}")
    return {"seconds": seconds, "exit_code": done.returncode, "last_line": last}
