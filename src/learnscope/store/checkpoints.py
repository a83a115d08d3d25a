"""Checkpoints: one safetensors file per checkpoint, never pickle.

The tensors (parameters, optimizer and intervention state) are the file's
tensors; everything else (step, seeds, optimizer hyperparameters) is JSON in
its header metadata. A checkpoint is made durable in an order that a crash
at any point cannot break:

1. write `step-N.safetensors.tmp`, flush and fsync it;
2. rename it to `step-N.safetensors` (atomic) and fsync the directory;
3. record path and sha256 in the store, dropping the previous record, in one
   transaction;
4. delete the previous file.

Resuming reads only the checkpoint the store records, and verifies its
sha256 first: a half-written file is never recorded, a renamed but
unrecorded one is ignored (and removed), and a file changed on disk after
it was recorded is refused, not loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from learnscope import faults
from learnscope.errors import LearnscopeError
from learnscope.store.sqlite import Store

FORMAT = 1
KIND = "checkpoint"


@dataclass(frozen=True)
class Checkpoint:
    step: int
    tensors: dict[str, torch.Tensor]
    meta: dict


def checkpoint_dir(store: Store, run_id: str) -> Path:
    return store.dir / "checkpoints" / run_id


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_checkpoint(store: Store, run_id: str, tensors: dict[str, torch.Tensor], meta: dict) -> Path:
    """Write, rename into place, record, then drop the previous checkpoint."""
    step = int(meta["step"])
    data = save_tensors(tensors, metadata={"learnscope": json.dumps({"format": FORMAT, **meta})})
    directory = checkpoint_dir(store, run_id)
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / f"step-{step:09d}.safetensors"
    temporary = final.with_name(final.name + ".tmp")
    with open(temporary, "wb") as f:
        half = len(data) // 2
        f.write(data[:half])
        faults.point("checkpoint-write")  # a crash here leaves a torn temporary file
        f.write(data[half:])
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, final)
    _fsync_dir(directory)
    faults.point("checkpoint-rename")  # renamed, not yet recorded: ignored on resume
    relative = final.relative_to(store.dir).as_posix()
    previous = store.replace_artifacts(run_id, KIND, relative, hashlib.sha256(data).hexdigest())
    faults.point("checkpoint-record")  # recorded; the previous file is still on disk
    for path in previous:
        if path != relative:
            (store.dir / path).unlink(missing_ok=True)
    return final


def read_checkpoint(store: Store, run_id: str) -> Checkpoint | None:
    """The run's recorded checkpoint, verified, or None if it has none.
    Files in its directory that the store does not record are removed."""
    records = [a for a in store.artifacts(run_id) if a["kind"] == KIND]
    if not records:
        _remove_unrecorded(store, run_id, keep=None)
        return None
    record = records[-1]
    path = store.dir / record["path"]
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise LearnscopeError(
            f"checkpoint {path} of run '{run_id}' cannot be read ({exc.strerror or exc}); nothing was changed"
        ) from None
    if hashlib.sha256(data).hexdigest() != record["sha256"]:
        raise LearnscopeError(
            f"checkpoint {path} of run '{run_id}' does not match its recorded sha256 (truncated or modified "
            f"after it was written); refusing to load it, nothing was changed"
        )
    try:
        tensors = load_tensors(data)
        meta = json.loads(_header(data)["__metadata__"]["learnscope"])
    except (SafetensorError, KeyError, ValueError) as exc:
        raise LearnscopeError(f"checkpoint {path} of run '{run_id}' is not a learnscope checkpoint: {exc}") from None
    if meta.get("format") != FORMAT:
        raise LearnscopeError(f"checkpoint {path} has format {meta.get('format')}; this learnscope reads {FORMAT}")
    _remove_unrecorded(store, run_id, keep=path)
    return Checkpoint(int(meta["step"]), tensors, meta)


def _header(data: bytes) -> dict:
    """The JSON header of a safetensors buffer: 8 bytes of length, then JSON."""
    size = int.from_bytes(data[:8], "little")
    return json.loads(data[8 : 8 + size])


def _remove_unrecorded(store: Store, run_id: str, keep: Path | None) -> None:
    directory = checkpoint_dir(store, run_id)
    if directory.is_dir():
        for path in directory.iterdir():
            if path != keep:
                path.unlink(missing_ok=True)
