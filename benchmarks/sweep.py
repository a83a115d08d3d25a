"""6. Sweeps: the wall time of a 4-trial sweep (the plain classifier spec, 4
learning rates × 4 seeds × 1500 steps) through `--backend ray --workers N`
(a local Ray instance, started by the command) against `--backend local`, as
whole commands a user types, in the same run. Reported, not a bar: on a
machine of few cores the trials compete for them, and the Ray instance costs
its start-up and one torch import per worker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from benchmarks.configs import CLASSIFIER

GRID = "recipe.lr=0.03,0.1,0.2,0.3"
SPEC = {**CLASSIFIER, "recipe": {**CLASSIFIER["recipe"], "steps": 1500}, "seeds": 4}


def _sweep(spec: Path, store: str, *backend: str) -> tuple[float, int]:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "learnscope", "sweep", str(spec), "--grid", GRID, "--store", store,
                           "--no-report", "--json", *backend], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"sweep {' '.join(backend)} failed: {done.stderr.strip()[-500:]}")
    trials = json.loads(done.stdout.strip().splitlines()[-1])["trials"]
    return seconds, len(trials)


def run(log=print) -> dict:
    workers = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as work:
        spec = Path(work) / "plain.yaml"
        spec.write_text(yaml.safe_dump(SPEC))
        local_s, trials = _sweep(spec, f"{work}/local", "--backend", "local")
        log(f"  local backend: {trials} trials in {local_s:.1f} s")
        ray_s, _ = _sweep(spec, f"{work}/ray", "--backend", "ray", "--workers", str(workers))
        log(f"  ray backend, {workers} workers: {trials} trials in {ray_s:.1f} s")
    return {"trials": trials, "workers": workers, "local_s": local_s, "ray_s": ray_s, "ratio": ray_s / local_s}
