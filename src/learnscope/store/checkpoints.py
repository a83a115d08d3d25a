"""Checkpoints: one safetensors file per checkpoint, never pickle.

The tensors (parameters, optimizer and intervention state) are the file's
tensors; everything else (step, seeds, optimizer hyperparameters) is JSON in
its header metadata. Where the bytes are kept, and how durably, is the
store's business (`RunStore.save_checkpoint`, `checkpoint_data`): files
recorded with their sha256 in the SQLite store, memory in a Ray worker.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from learnscope.errors import LearnscopeError
from learnscope.store.base import RunStore

FORMAT = 1


@dataclass(frozen=True)
class Checkpoint:
    step: int
    tensors: dict[str, torch.Tensor]
    meta: dict


def write_checkpoint(store: RunStore, run_id: str, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    data = save_tensors(tensors, metadata={"learnscope": json.dumps({"format": FORMAT, **meta})})
    store.save_checkpoint(run_id, int(meta["step"]), data)


def read_checkpoint(store: RunStore, run_id: str) -> Checkpoint | None:
    """The run's checkpoint, verified, or None if it has none."""
    found = store.checkpoint_data(run_id)
    if found is None:
        return None
    data, where = found
    try:
        tensors = load_tensors(data)
        meta = json.loads(_header(data)["__metadata__"]["learnscope"])
    except (SafetensorError, KeyError, ValueError) as exc:
        raise LearnscopeError(f"checkpoint {where} of run '{run_id}' is not a learnscope checkpoint: {exc}") from None
    if meta.get("format") != FORMAT:
        raise LearnscopeError(f"checkpoint {where} has format {meta.get('format')}; this learnscope reads {FORMAT}")
    return Checkpoint(int(meta["step"]), tensors, meta)


def checkpoint_step(data: bytes) -> int:
    """The step a checkpoint file's bytes were written at."""
    return int(json.loads(_header(data)["__metadata__"]["learnscope"])["step"])


def _header(data: bytes) -> dict:
    """The JSON header of a safetensors buffer: 8 bytes of length, then JSON."""
    size = int.from_bytes(data[:8], "little")
    return json.loads(data[8 : 8 + size])
