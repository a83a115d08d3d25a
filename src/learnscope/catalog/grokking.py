"""Grokking: on modular addition, train accuracy saturates long before test
accuracy jumps from chance to perfect; without weight decay, in the same
budget, test accuracy never rises.

Setting: (a + b) mod p with an embedding MLP trained full-batch by AdamW
with weight decay, as in the grokking papers; the control arm is the same
experiment with weight decay 0.

Signature, per seed: t_fit (the first probed step with train accuracy at
FIT_ACCURACY) and t_gen (test accuracy at GEN_ACCURACY) exist, t_gen comes
DELAY_FACTOR times later, and the control's best test accuracy stays below
CONTROL_CEILING. The thresholds, with the ranges measured across seeds when
they were set, are data on the phenomenon (`learnscope list grokking`).
"""

from __future__ import annotations

import numpy as np

from learnscope import registry
from learnscope.catalog.base import Arm, Phenomenon
from learnscope.results import ArmData, Threshold, Verdict, first_step
from learnscope.spec import Experiment

FIT_ACCURACY = Threshold(0.99, "FIT_ACCURACY", "train accuracy at t_fit, the step the arm has fitted")
GEN_ACCURACY = Threshold(0.95, "GEN_ACCURACY", "test accuracy at t_gen, the step the arm has generalized")
DELAY_FACTOR = Threshold(3.0, "DELAY_FACTOR", "least t_gen / t_fit: generalization comes well after fitting",
                         "t_gen / t_fit", full=(4.2, 5.9), quick=(3.6, 5.9), seeds={"full": 8, "quick": 8})
CONTROL_CEILING = Threshold(0.5, "CONTROL_CEILING", "the no-weight-decay control's best test accuracy stays below",
                            "control best test accuracy", full=(0.0, 0.03), quick=(0.0, 0.03))


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
    # without weight decay the logits grow until exp underflows into subnormal floats: the control
    # arm ran 5x slower per step (49.6 s against 9.6 s, quick); flushing them changes only values
    # below 1.2e-38 (the recorded quick verdicts of grokking and grokfast are unchanged, bit for bit)
    recipe["flush_denormal"] = True
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
    thresholds = (FIT_ACCURACY, GEN_ACCURACY, DELAY_FACTOR, CONTROL_CEILING)

    def arms(self, quick: bool) -> list[Arm]:
        grokking = Arm("grokking", grokking_experiment(quick))
        return [grokking, grokking.derive("no-weight-decay", {"recipe.weight_decay": 0.0})]

    def check(self, arms: dict[str, ArmData]) -> Verdict:
        grok, control = arms["grokking"], arms["no-weight-decay"]
        sig = self.signature(grok.seeds)
        t_fit, t_gen = fit_and_generalization_steps(grok)
        sig.measure("t_fit", t_fit)
        sig.measure("t_gen", t_gen)
        sig.measure("t_gen / t_fit", t_gen / np.maximum(t_fit, 1))
        control_best = sig.measure("control best test accuracy", np.nanmax(control.curve("accuracy/test")[1], axis=1))
        sig.claim(f"train accuracy reaches {FIT_ACCURACY}", ~np.isnan(t_fit),
                  f"train accuracy never reached {FIT_ACCURACY}")
        sig.claim(f"test accuracy reaches {GEN_ACCURACY}", ~np.isnan(t_gen),
                  f"test accuracy never reached {GEN_ACCURACY}")
        sig.claim(f"t_gen >= {DELAY_FACTOR:g} x t_fit", ~(t_gen < DELAY_FACTOR * np.maximum(t_fit, 1)),
                  f"t_gen {{0:.0f}} < {DELAY_FACTOR:g} x t_fit {{1:.0f}}", t_gen, t_fit)
        sig.claim(f"the no-weight-decay control's test accuracy stays below {CONTROL_CEILING:g}",
                  ~(control_best >= CONTROL_CEILING),
                  "the no-weight-decay control reached test accuracy {0:.3f}", control_best)
        return sig.verdict()
