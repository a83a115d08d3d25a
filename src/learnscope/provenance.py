"""Where a run came from: the software it ran on and the command that makes it again.

A top-level run records an `environment` event when it starts (learnscope,
torch and Python versions, the git commit of the checkout learnscope runs
from, the host), and a phenomenon run stores the seeds and `--set`
overrides it was asked for, so its report can print the command that
reproduces it.
"""

from __future__ import annotations

import platform
import shlex
import subprocess
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from learnscope.version import __version__

ENVIRONMENT_EVENT = "environment"


@cache
def git_commit() -> str | None:
    """The commit of the git checkout this learnscope is imported from
    ("+changes" when it has uncommitted ones); None outside a checkout."""
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10)
        changed = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                 capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if head.returncode != 0:
        return None
    return head.stdout.strip() + ("+changes" if changed.stdout.strip() else "")


def environment() -> dict[str, Any]:
    try:
        torch_version = version("torch")
    except PackageNotFoundError:
        torch_version = None
    return {"learnscope": __version__, "torch": torch_version, "python": platform.python_version(),
            "git": git_commit(), "host": platform.node()}


def phenomenon_command(name: str, quick: bool, seeds: int | None, overrides: list[str]) -> str:
    """The command that runs a phenomenon as it was run."""
    parts = ["learnscope", "run", name, *(["--quick"] if quick else []),
             *([f"--seeds={seeds}"] if seeds is not None else [])]
    for item in overrides:
        parts += ["--set", item]
    return shlex.join(parts)
