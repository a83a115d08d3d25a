"""Shared test setup.

Test tasks used by several modules are registered here, once.

One intra-op thread per test process: the suite runs under `pytest -n 2` on
small machines shared with other work, where torch's default thread pool
(one thread per core, spin-waiting) makes these tiny models orders of
magnitude slower, not faster. Subprocesses started by the tests inherit
OMP_NUM_THREADS.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


from pydantic import Field  # noqa: E402

from learnscope import registry  # noqa: E402
from learnscope.losses import IGNORE  # noqa: E402
from learnscope.tasks.base import Dataset, Task, TaskInfo  # noqa: E402


@registry.tasks.register("test-token-strings")
class TokenStrings(Task):
    """Test task: random token strings; the target at position t is token t+1,
    scored only in the second half (a prompt, then its continuation)."""

    length: int = Field(8, ge=4)
    vocab: int = Field(11, ge=2)
    samples: int = Field(40, ge=4)
    train_fraction: float = Field(0.5, gt=0, lt=1)

    def info(self) -> TaskInfo:
        return TaskInfo("tokens", (self.length,), self.vocab, "cross_entropy", ("train", "test"),
                        vocab_size=self.vocab, sequence=True)

    def build(self, seed: int) -> Dataset:
        gen = torch.Generator().manual_seed(seed)
        tokens = torch.randint(0, self.vocab, (self.samples, self.length + 1), generator=gen)
        targets = tokens[:, 1:].clone()
        targets[:, : self.length // 2] = IGNORE
        train = round(self.samples * self.train_fraction)
        splits = {"train": torch.arange(train), "test": torch.arange(train, self.samples)}
        return Dataset(tokens[:, :-1], targets, splits)


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """A test in its own working directory with no store configured, so
    nothing lands in the repository's ./learnscope-runs (modules that run the
    CLI use it for every test: pytestmark)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LEARNSCOPE_STORE", raising=False)
