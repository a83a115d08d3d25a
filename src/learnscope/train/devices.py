"""Which device a run trains on: `auto`, `cpu`, `cuda` (or `cuda:N`), `mps`.

`auto` takes CUDA when there is a CUDA device, then Apple's MPS, else the
CPU. A device that is asked for and not there is bad input, refused in one
line naming it and what this machine has. Results are deterministic per
device (the same seeds on the same device give the same numbers): on CUDA
that needs PyTorch's deterministic algorithms and a fixed cuBLAS workspace,
which `deterministic_on` turns on for the process; the CPU and a GPU run
different kernels, so their last digits differ.
"""

from __future__ import annotations

import os

import torch

from learnscope.errors import LearnscopeError

CHOICES = ("auto", "cpu", "cuda", "mps")


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def available() -> list[str]:
    """The devices this machine has, as `--device` names them."""
    found = ["cpu"]
    if torch.cuda.is_available():
        count = torch.cuda.device_count()
        found += ["cuda"] + ([f"cuda:{i}" for i in range(count)] if count > 1 else [])
    if _mps_available():
        found.append("mps")
    return found


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """The torch device a `--device` value names (None: auto), or one
    LearnscopeError when it is unknown or not on this machine."""
    if isinstance(device, torch.device):
        device = str(device)
    name = (device or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    kind, _, index = name.partition(":")
    if kind not in CHOICES[1:] or (index and not (kind == "cuda" and index.isdigit())):
        raise LearnscopeError(f"unknown device '{device}'; valid: {', '.join(CHOICES)} (or cuda:N)")
    here = available()
    if kind == "cuda" and torch.cuda.is_available() and index and int(index) >= torch.cuda.device_count():
        raise LearnscopeError(f"device '{name}' is not on this machine: it has {torch.cuda.device_count()} CUDA "
                              f"device(s); available: {', '.join(here)}")
    if kind not in [h.partition(":")[0] for h in here]:
        why = {"cuda": "no CUDA device found" if torch.version.cuda else
               f"this PyTorch ({torch.__version__}) is built without CUDA",
               "mps": "no Apple MPS device found"}[kind]
        raise LearnscopeError(f"device '{name}' is not available ({why}); available: {', '.join(here)}")
    return torch.device(name)


def deterministic_on(device: torch.device) -> None:
    """Make training on `device` repeatable run to run. The CPU kernels learnscope
    uses are; on CUDA, scatter-style backward passes (index_select, gather,
    embeddings) and cuBLAS's split reductions are not unless PyTorch's
    deterministic algorithms are on, which this does for the process (an
    operation with no deterministic kernel then warns instead of running
    silently nondeterministic). The cuBLAS setting takes effect if no cuBLAS
    handle exists yet, as at the start of a `learnscope run`."""
    if device.type != "cuda":
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
