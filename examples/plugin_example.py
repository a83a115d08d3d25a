"""An example plugin: a probe and a phenomenon defined outside learnscope.

    learnscope verify weight-decay-shrinks --quick --plugin examples/plugin_example.py
    learnscope run examples/largest_weight.yaml --plugin examples/plugin_example.py

Components register with the same decorators as the built-in ones; the
file is loaded by `--plugin FILE` (or `$LEARNSCOPE_PLUGINS`, or the
`learnscope.plugins` entry-point group of an installed package).
"""

from __future__ import annotations

import torch

from learnscope import registry
from learnscope.catalog.base import Arm, Phenomenon
from learnscope.probes.base import Probe, ProbeContext
from learnscope.results import ArmData, Threshold, Verdict
from learnscope.spec import Experiment


@registry.probes.register("largest_weight")
class LargestWeight(Probe):
    """The largest absolute parameter of each seed, max |theta|."""

    def metric_names(self, info):
        return ["largest_weight"]

    def measure(self, ctx: ProbeContext) -> dict[str, torch.Tensor]:
        per_tensor = [p.detach().abs().reshape(p.shape[0], -1).amax(1) for p in ctx.params]
        return {"largest_weight": torch.stack(per_tensor).amax(0)}


SHRINK = Threshold(0.8, "SHRINK", "most final weight norm with weight decay / without it",
                   "weight norm ratio")


@registry.phenomena.register("weight-decay-shrinks")
class WeightDecayShrinks(Phenomenon):
    summary = "weight decay ends training with smaller weights than the same seeds without it"
    source = "an example plugin (examples/plugin_example.py)"
    headline = "weight_norm"
    thresholds = (SHRINK,)

    def arms(self, quick: bool) -> list[Arm]:
        steps, seeds = (100, 2) if quick else (400, 4)
        plain = Arm("plain", Experiment.model_validate({
            "task": {"name": "gaussian-mixture", "classes": 4, "dim": 8, "samples": 256},
            "model": {"name": "mlp", "hidden": [32]},
            "recipe": {"optimizer": "adamw", "lr": 0.01, "weight_decay": 0.0, "steps": steps, "probe_every": 50},
            "probes": ["accuracy", "weight_norm", "largest_weight"],
            "seeds": seeds,
        }))
        return [plain, plain.derive("weight-decay", {"recipe.weight_decay": 1.0})]

    def check(self, arms: dict[str, ArmData]) -> Verdict:
        plain, decayed = arms["plain"], arms["weight-decay"]
        sig = self.signature(plain.seeds)
        ratio = sig.measure("weight norm ratio", decayed.final("weight_norm") / plain.final("weight_norm"))
        largest = sig.measure("largest weight ratio", decayed.final("largest_weight") / plain.final("largest_weight"))
        sig.claim(f"weight norm with weight decay <= {SHRINK:g} x without", ratio <= SHRINK,
                  "weight norm ratio {0:.3f} > " + f"{SHRINK:g}", ratio)
        sig.claim("the largest weight shrinks too", largest < 1, "largest weight ratio {0:.3f} >= 1", largest)
        return sig.verdict()
