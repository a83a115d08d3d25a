"""learnscope's optimizer updates (learnscope.stacked_optim) against torch.optim's,
bit for bit, for every optimizer of learnscope.optimizers; their state loads
across the two; and building one imports no torch._dynamo."""

from __future__ import annotations

import copy
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

from learnscope.optimizers import OPTIMIZERS


def reference(name: str, params, r):
    if name == "sgd":
        return torch.optim.SGD(params, lr=r.lr, momentum=r.momentum, weight_decay=r.weight_decay, foreach=True)
    cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[name]
    return cls(params, lr=r.lr, betas=r.betas, weight_decay=r.weight_decay, fused=True)


SETTINGS = [
    SimpleNamespace(lr=0.1, momentum=0.0, weight_decay=0.0, betas=(0.9, 0.98)),
    SimpleNamespace(lr=0.05, momentum=0.9, weight_decay=0.01, betas=(0.8, 0.95)),
    SimpleNamespace(lr=3e-3, momentum=0.5, weight_decay=1.0, betas=(0.9, 0.999)),
]


def stacked_params(seed: int) -> list[torch.nn.Parameter]:
    gen = torch.Generator().manual_seed(seed)
    shapes = [(16, 32, 64), (16, 64), (16, 64, 10), (16, 10)]
    return [torch.nn.Parameter(torch.randn(*s, generator=gen)) for s in shapes]


def train(optimizer, params, steps: int, start: int = 0, skip_last: bool = True):
    for step in range(start, start + steps):
        gen = torch.Generator().manual_seed(1000 + step)
        optimizer.zero_grad(set_to_none=True)
        for i, p in enumerate(params):
            if skip_last and i == len(params) - 1 and step % 3 == 1:
                continue  # a parameter without a gradient in a step: neither moves it
            p.grad = torch.randn(p.shape, generator=gen)
        for group in optimizer.param_groups:
            group["lr"] = group["lr"] * 0.97  # a schedule, as set_lr changes it
        optimizer.step()


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("settings", range(len(SETTINGS)))
def test_update_equals_torch_optim_bit_for_bit(name, settings):
    r = SETTINGS[settings]
    ours_params, torch_params = stacked_params(0), stacked_params(0)
    ours = OPTIMIZERS[name].build(ours_params, r)
    theirs = reference(name, torch_params, r)
    train(ours, ours_params, 7)
    train(theirs, torch_params, 7)
    for a, b in zip(ours_params, torch_params):
        assert torch.equal(a, b)
    ours_state, their_state = ours.state_dict(), theirs.state_dict()
    assert ours_state["param_groups"][0].keys() == their_state["param_groups"][0].keys()
    assert ours_state["state"].keys() == their_state["state"].keys()
    for index, entries in their_state["state"].items():
        assert entries.keys() == ours_state["state"][index].keys()
        for key, value in entries.items():
            assert torch.equal(value, ours_state["state"][index][key]), (index, key)
            assert value.dtype == ours_state["state"][index][key].dtype


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_state_crosses_between_torch_optim_and_ours(name):
    """A checkpoint written through torch.optim (runs before learnscope's own
    updates) resumes in ours exactly, and ours in torch.optim."""
    r = SETTINGS[1]
    params_a, params_b = stacked_params(1), stacked_params(1)
    theirs = reference(name, params_a, r)
    train(theirs, params_a, 4)
    ours = OPTIMIZERS[name].build(params_b, r)
    with torch.no_grad():
        for a, b in zip(params_a, params_b):
            b.copy_(a)
    ours.load_state_dict(copy.deepcopy(theirs.state_dict()))  # as a checkpoint file holds it: no shared tensors
    train(theirs, params_a, 4, start=4)
    train(ours, params_b, 4, start=4)
    for a, b in zip(params_a, params_b):
        assert torch.equal(a, b)
    back = reference(name, params_a, r)
    back.load_state_dict(copy.deepcopy(ours.state_dict()))
    train(back, params_a, 3, start=8)
    train(ours, params_b, 3, start=8)
    for a, b in zip(params_a, params_b):
        assert torch.equal(a, b)


def test_building_and_stepping_imports_no_dynamo():
    code = ("import sys, torch\n"
            "from types import SimpleNamespace\n"
            "from learnscope.optimizers import OPTIMIZERS\n"
            "r = SimpleNamespace(lr=0.1, momentum=0.9, weight_decay=0.1, betas=(0.9, 0.98))\n"
            "for name, kind in OPTIMIZERS.items():\n"
            "    p = [torch.nn.Parameter(torch.ones(4, 3))]\n"
            "    o = kind.build(p, r)\n"
            "    p[0].grad = torch.ones(4, 3)\n"
            "    o.step()\n"
            "print(sorted(m for m in sys.modules if m.startswith('torch._dynamo')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
