"""The configurations the benchmarks train, each in two forms: a learnscope
Experiment, and the plain PyTorch loop a researcher writes without
learnscope (nn.Module, torch.optim, DataLoader for minibatches)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from learnscope.spec import Experiment
from learnscope.train.trainer import Trainer


@dataclass(frozen=True)
class Config:
    name: str
    spec: dict
    plain: Callable[[int], Callable[[], None]]  # seed -> one training step of a plain PyTorch run

    def experiment(self, seeds: int) -> Experiment:
        return Experiment.model_validate({**self.spec, "seeds": seeds})

    def trainer(self, seeds: int) -> Trainer:
        return Trainer(self.experiment(seeds))


def _task_tensors(spec: dict, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The training split a plain script would load: the same data learnscope trains on."""
    task = Experiment.model_validate({**spec, "seeds": 1}).task
    data = task.build(seed)
    train = data.splits["train"]
    return data.inputs[train], data.targets[train]


# ---------------------------------------------------------------- plain classifier

CLASSIFIER = {
    "task": {"name": "gaussian-mixture", "classes": 10, "dim": 32, "samples": 4096},
    "model": {"name": "mlp", "hidden": [64, 64]},
    "recipe": {"optimizer": "sgd", "lr": 0.1, "steps": 10**6, "batch_size": 128},
    "probes": ["accuracy"],
}


def plain_classifier(seed: int) -> Callable[[], None]:
    torch.manual_seed(seed)
    x, y = _task_tensors(CLASSIFIER, seed)
    model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loader = DataLoader(TensorDataset(x, y), batch_size=128, shuffle=True, drop_last=True)
    batches = iter(loader)

    def step() -> None:
        nonlocal batches
        try:
            xb, yb = next(batches)
        except StopIteration:
            batches = iter(loader)
            xb, yb = next(batches)
        loss = F.cross_entropy(model(xb), yb)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return step


# ---------------------------------------------------------------- grokking MLP (full batch)

GROKKING_MLP = {
    "task": {"name": "modular-arithmetic", "p": 97, "train_fraction": 0.4},
    "model": {"name": "mlp", "embed": 32, "hidden": [128]},
    "recipe": {"optimizer": "adamw", "lr": 5e-3, "weight_decay": 1.0, "steps": 10**6},
    "probes": ["accuracy"],
}


class EmbeddingMLP(nn.Module):
    def __init__(self, vocab: int, embed: int, tokens: int, hidden: int, classes: int):
        super().__init__()
        self.embed = nn.Embedding(vocab, embed)
        self.fc = nn.Linear(tokens * embed, hidden)
        self.out = nn.Linear(hidden, classes)

    def forward(self, x):
        return self.out(torch.relu(self.fc(self.embed(x).flatten(1))))


def plain_grokking_mlp(seed: int) -> Callable[[], None]:
    torch.manual_seed(seed)
    x, y = _task_tensors(GROKKING_MLP, seed)
    model = EmbeddingMLP(98, 32, 3, 128, 97)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3, weight_decay=1.0, betas=(0.9, 0.98))

    def step() -> None:
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return step


# ---------------------------------------------------------------- grokking transformer (1 layer, full batch)

GROKKING_TRANSFORMER = {
    "task": {"name": "modular-arithmetic", "p": 59, "train_fraction": 0.5},
    "model": {"name": "transformer", "layers": 1, "d_model": 64, "heads": 4, "d_mlp": 256},
    "recipe": {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 1.0, "steps": 10**6},
    "probes": ["accuracy"],
}


class TinyTransformer(nn.Module):
    """One pre-layernorm decoder block reading the last position, as a researcher writes it."""

    def __init__(self, vocab: int, d: int, heads: int, d_mlp: int, seq: int, classes: int):
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.pos = nn.Parameter(torch.randn(seq, d) / math.sqrt(d))
        self.ln1, self.ln2, self.ln_f = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, heads, bias=False, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(d, d_mlp), nn.ReLU(), nn.Linear(d_mlp, d))
        self.unembed = nn.Linear(d, classes, bias=False)
        self.register_buffer("mask", torch.ones(seq, seq, dtype=torch.bool).triu(1))

    def forward(self, x):
        h = self.embed(x) + self.pos
        a = self.ln1(h)
        h = h + self.attn(a, a, a, attn_mask=self.mask, need_weights=False)[0]
        h = h + self.mlp(self.ln2(h))
        return self.unembed(self.ln_f(h[:, -1]))


def plain_grokking_transformer(seed: int) -> Callable[[], None]:
    torch.manual_seed(seed)
    x, y = _task_tensors(GROKKING_TRANSFORMER, seed)
    model = TinyTransformer(60, 64, 4, 256, 3, 59)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1.0, betas=(0.9, 0.98))

    def step() -> None:
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return step


CONFIGS = [
    Config("plain classifier (MLP 32-64-64-10, batch 128)", CLASSIFIER, plain_classifier),
    Config("grokking MLP (p=97, full batch)", GROKKING_MLP, plain_grokking_mlp),
    Config("grokking transformer (1 layer, p=59, full batch)", GROKKING_TRANSFORMER, plain_grokking_transformer),
]
