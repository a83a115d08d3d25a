"""5. The torch-module ensemble (any nn.Module, vmap over functional_call)
against the built-in stacked MLP: time per training step at S = 16 on the
plain classifier (MLP 32-64-64-10, SGD, batch 128), the same network either
way, both timed interleaved in one run."""

from __future__ import annotations

from torch import nn

from benchmarks.configs import CLASSIFIER
from benchmarks.timing import interleaved
from learnscope.spec import Experiment
from learnscope.train.trainer import Trainer

SEEDS = 16
TORCH_MODULE = {**CLASSIFIER, "model": {"name": "torch-module", "factory": "benchmarks.torch_module:classifier"}}


def classifier() -> nn.Module:
    """The plain classifier's network, as a researcher writes it."""
    return nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))


def run(seeds: int = SEEDS, repeats: int = 7, log=print) -> dict:
    trainers = {name: Trainer(Experiment.model_validate({**spec, "seeds": seeds}))
                for name, spec in (("builtin", CLASSIFIER), ("torch-module", TORCH_MODULE))}
    for trainer in trainers.values():
        for _ in range(3):  # past the first steps' allocations and vmap's first trace
            trainer.train_step()
    times = interleaved({name: t.train_step for name, t in trainers.items()}, repeats=repeats, warmup=1,
                        target_seconds=0.25)
    ratio = times["torch-module"] / times["builtin"]
    log(f"  plain classifier S={seeds}: built-in mlp {times['builtin'] * 1e3:.2f} ms, torch-module "
        f"{times['torch-module'] * 1e3:.2f} ms per step: {ratio:.2f}x")
    return {"seeds": seeds, "builtin_s": times["builtin"], "torch_module_s": times["torch-module"], "ratio": ratio}
