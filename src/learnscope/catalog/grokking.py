"""Grokking: on modular addition, train accuracy saturates long before test
accuracy jumps from chance to perfect; without weight decay, in the same
budget, test accuracy never rises.

Setting: (a + b) mod p with an embedding MLP trained full-batch by AdamW
with weight decay, as in the grokking papers; the control arm is the same
experiment with weight decay 0.

Signature, per seed (the thresholds were set from measured runs, margins
stated beside each):
- t_fit, the first probed step with train accuracy >= 0.99, exists;
- t_gen, the first probed step with test accuracy >= 0.95, exists;
- t_gen >= 3 * t_fit: generalization comes well after fitting (measured
  ratios: 4.2-5.9 at full size, 3.6-5.9 at --quick, 8 seeds each);
- in the control, the best test accuracy stays below 0.5 (measured <= 0.03).
"""

from __future__ import annotations

import numpy as np

from learnscope import registry
from learnscope.catalog.base import ArmData, Phenomenon, Verdict, first_step
from learnscope.spec import Experiment

FIT_ACCURACY = 0.99
GEN_ACCURACY = 0.95
DELAY_FACTOR = 3.0
CONTROL_CEILING = 0.5


def grokking_experiment(quick: bool) -> Experiment:
    """The grokking arm, shared by the phenomena built on it (grokfast)."""
    if quick:
        task = {"name": "modular-arithmetic", "p": 59, "op": "+", "train_fraction": 0.5}
        model = {"name": "mlp", "embed": 16, "hidden": [64]}
        recipe = {"optimizer": "adamw", "lr": 1e-2, "weight_decay": 0.5, "steps": 1200,
                  "probe_every": 20, "probe_log_points": 20}
        seeds = 4
    else:
        task = {"name": "modular-arithmetic", "p": 97, "op": "+", "train_fraction": 0.4}
        model = {"name": "mlp", "embed": 32, "hidden": [128]}
        recipe = {"optimizer": "adamw", "lr": 5e-3, "weight_decay": 1.0, "steps": 1600,
                  "probe_every": 25, "probe_log_points": 30}
        seeds = 8
    return Experiment.model_validate(
        {"task": task, "model": model, "recipe": recipe, "probes": ["accuracy", "loss", "weight_norm"],
         "seeds": seeds}
    )


def fit_and_generalization_steps(arm: ArmData) -> tuple[np.ndarray, np.ndarray]:
    """(t_fit, t_gen) per seed: first probed steps at the accuracy thresholds (nan if never)."""
    steps, train = arm.curve("accuracy/train")
    _, test = arm.curve("accuracy/test")
    return first_step(steps, train, FIT_ACCURACY), first_step(steps, test, GEN_ACCURACY)


@registry.phenomena.register("grokking")
class Grokking(Phenomenon):
    summary = "modular addition: test accuracy jumps long after train accuracy saturates; not without weight decay"
    source = (
        "Grokking as the Transition from Lazy to Rich Training Dynamics; "
        "Dichotomy of Early and Late Phase Implicit Biases Can Provably Induce Grokking"
    )
    headline = "accuracy/test"

    def arms(self, quick: bool) -> dict[str, Experiment]:
        experiment = grokking_experiment(quick)
        return {"grokking": experiment, "no-weight-decay": experiment.with_overrides(["recipe.weight_decay=0"])}

    def check(self, arms: dict[str, ArmData]) -> Verdict:
        grok, control = arms["grokking"], arms["no-weight-decay"]
        t_fit, t_gen = fit_and_generalization_steps(grok)
        control_best = np.nanmax(control.curve("accuracy/test")[1], axis=1)
        failures = []
        for fit, gen, best in zip(t_fit, t_gen, control_best):
            if np.isnan(fit):
                why = f"train accuracy never reached {FIT_ACCURACY}"
            elif np.isnan(gen):
                why = f"test accuracy never reached {GEN_ACCURACY}"
            elif gen < DELAY_FACTOR * max(fit, 1):
                why = f"t_gen {gen:.0f} < {DELAY_FACTOR:g} x t_fit {fit:.0f}"
            elif best >= CONTROL_CEILING:
                why = f"the no-weight-decay control reached test accuracy {best:.3f}"
            else:
                why = ""
            failures.append(why)
        return self.verdict(
            grok.seeds,
            failures,
            {
                "t_fit": t_fit.tolist(),
                "t_gen": t_gen.tolist(),
                "t_gen / t_fit": (t_gen / np.maximum(t_fit, 1)).tolist(),
                "control best test accuracy": control_best.tolist(),
            },
        )
