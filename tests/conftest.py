"""Shared test setup.

One intra-op thread per test process: the suite runs under `pytest -n 2` on
small machines shared with other work, where torch's default thread pool
(one thread per core, spin-waiting) makes these tiny models orders of
magnitude slower, not faster. Subprocesses started by the tests inherit
OMP_NUM_THREADS.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)
