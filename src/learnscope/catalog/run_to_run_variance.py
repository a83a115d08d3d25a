"""Run-to-run variance: seeds trained on one dataset differ in accuracy on
a test set far more than in accuracy on the distribution the test set is
drawn from, and the difference is what independent per-example errors
predict ("Calibrated Chaos: Variance Between Runs of Neural Network
Training is Harmless and Inevitable", Jordan 2023).

Setting: one dataset for every seed (`data_seed`
0: 10 classes in 32 dimensions, separation 2.5, 2048 training examples),
so seeds differ only in initialization and batch order, as repeated runs
of one training do; an MLP with one hidden layer of 128 ReLU units, AdamW
lr 3e-3, batches of 64. The `test` split is large (20000 examples at
quick, 100000 at full): its accuracy stands for the distribution's. Its
first 500 examples are "a test set", and `agreement` cuts the whole split
into consecutive test sets of 500 (40 at quick, 200 at full) to measure
the variance of a 500-example test set's accuracy across seeds from all of
them at once (one test set's, across 16 seeds, has a relative spread of
about 0.37; the mean over 40 of them, about a tenth). Quick: 16 seeds, 400
updates; full: 32 seeds, 1000 updates.

Signature (one value for the ensemble, so every seed passes or none):
- the seeds' std of accuracy on a test set of 500 is at least RATIO times
  their std of accuracy on the whole split: runs spread on a test set far
  more than on the distribution (the whole split's std still holds its own
  finite-set part; removed, the distribution's std is smaller still);
- that variance is within a factor e^TOLERANCE (TOLERANCE · √(16 / S) at S
  seeds) of the independent-errors prediction Σᵢ p̂ᵢ(1 − p̂ᵢ) · S/(S − 1) /
  500², p̂ᵢ the share of seeds right on example i (the source's simplifying
  assumption: each run gets each example right independently, with its
  own probability). The shares of examples every seed, no seed, and some
  seeds get right are reported with the verdict.

Measured (5 ensembles per size: the seeds 0-15 / 0-31, two other seed
sets, and `--set data_seed=1` and `=2`; quick / full): a 500-example
test set's std 0.0081-0.0090 / 0.0101-0.0109 against the whole split's
0.0015-0.0020 / 0.0014-0.0016 (finite-set part removed: 0.0006-0.0014 /
0.0012-0.0015), their ratio 4.27-5.89 / 6.63-7.66; observed over predicted
variance 1.002-1.040 / 1.008-1.039; every seed right on 0.60-0.65 /
0.47-0.54 of the examples, no seed on 0.14-0.16 / 0.10-0.12, the seeds
disagree on 0.21-0.24 / 0.36-0.41. At full the longer training overfits
the 2048 examples more: lower accuracy (0.71 against 0.73), more examples
in dispute.

The thresholds, with the ranges measured across ensembles when they were
set (`learnscope run run-to-run-variance --quick`, with `--set
seeds=[16,...,31]`, `seeds=[32,...,47]`, `data_seed=1`, `=2`, and the
same at full with 32 seeds each), are data on the phenomenon (`learnscope
list run-to-run-variance`).
"""

from __future__ import annotations

import math

import numpy as np

from learnscope import registry
from learnscope.catalog.base import Arm, Phenomenon
from learnscope.results import ArmData, Threshold, Verdict
from learnscope.spec import Experiment

SEEDS = {True: 16, False: 32}
SEEDS_MEASURED = {"full": 32, "quick": 16}
SMALL = 500  # examples of a small test set: the leading ones of `test`, and the size of each of its cuts
LARGE = {True: 20000, False: 100000}  # examples of `test`: the distribution, nearly
STEPS = {True: 400, False: 1000}
SAMPLES = 2048
DATA_SEED = 0
RATIO = Threshold(3.0, "RATIO", "least ratio of the seeds' std of accuracy on a test set of 500 to their std of "
                  "distribution (whole-test-split) accuracy", "small over distribution std",
                  full=(6.630, 7.659), quick=(4.269, 5.893), seeds=SEEDS_MEASURED)
TOLERANCE = Threshold(0.2, "TOLERANCE", "largest |log| of the ratio of the accuracy variance of a test set of 500 "
                      "across seeds to the independent-errors prediction, at 16 seeds (scaled by sqrt(16 / seeds))",
                      "|log observed over predicted variance|", full=(0.00832, 0.0385), quick=(0.00189, 0.0389),
                      seeds=SEEDS_MEASURED)
ARM = "runs"
SMALL_ACCURACY, LARGE_ACCURACY, AGREEMENT = "accuracy@small/test", "accuracy/test", "agreement/test"


def experiment(quick: bool) -> Experiment:
    steps = STEPS[quick]
    return Experiment.model_validate({
        "task": {"name": "gaussian-mixture", "classes": 10, "dim": 32, "separation": 2.5, "samples": SAMPLES,
                 "test_samples": LARGE[quick]},
        "model": {"name": "mlp", "hidden": [128]},
        "recipe": {"optimizer": "adamw", "lr": 3e-3, "batch_size": 64, "steps": steps, "probe_every": steps,
                   "probe_log_points": 0},
        "probes": [{"name": "accuracy", "splits": ["test"]},
                   {"name": "accuracy", "label": "small", "splits": ["test"], "max_examples": SMALL},
                   {"name": "agreement", "split": "test", "test_size": SMALL}],
        "seeds": SEEDS[quick],
        "data_seed": DATA_SEED,
    })


@registry.phenomena.register("run-to-run-variance")
class RunToRunVariance(Phenomenon):
    summary = ("seeds trained on one dataset spread in test-set accuracy far more than in accuracy on the "
               "distribution, as much as independent per-example errors predict")
    source = "Calibrated Chaos: Variance Between Runs of Neural Network Training is Harmless and Inevitable"
    thresholds = (RATIO, TOLERANCE)
    comparison = {SMALL_ACCURACY: "small test set accuracy", LARGE_ACCURACY: "distribution accuracy"}

    def arms(self, quick: bool) -> list[Arm]:
        return [Arm(ARM, experiment(quick))]

    def check(self, arms: dict[str, ArmData]) -> Verdict:
        arm = arms[ARM]
        seeds = arm.seeds
        sig = self.signature(seeds)
        everyone = np.ones(len(seeds))
        small = sig.measure("small test set accuracy", arm.final(SMALL_ACCURACY))
        large = sig.measure("distribution accuracy", arm.final(LARGE_ACCURACY))
        if len(seeds) < 2:
            return sig.fail_all("run-to-run variance is a spread across seeds: give at least 2")
        observed = float(np.mean(arm.final(f"{AGREEMENT}/variance")))
        predicted = float(np.mean(arm.final(f"{AGREEMENT}/independent_variance")))
        large_std = float(large.std(ddof=1))
        ratio = math.sqrt(observed) / max(large_std, 1e-12)
        log_ratio = math.log(observed / predicted) if observed > 0 and predicted > 0 else math.inf
        sig.measure("one small test set's std", float(small.std(ddof=1)) * everyone)
        sig.measure("small test set std", math.sqrt(observed) * everyone)
        sig.measure("distribution std", large_std * everyone)
        sig.measure("small over distribution std", ratio * everyone)
        sig.measure("independent-errors std", math.sqrt(predicted) * everyone)
        sig.measure("observed over predicted variance", observed / predicted * everyone)
        sig.measure("|log observed over predicted variance|", abs(log_ratio) * everyone)
        # the distribution-level variance: the whole split's, less its own finite-set part (independent errors)
        whole_set = predicted * SMALL / arm.experiment.task.test_samples  # type: ignore[attr-defined]
        sig.measure("distribution std, finite-set part removed", math.sqrt(max(large_std ** 2 - whole_set, 0.0)) * everyone)
        for share in ("all_right", "none_right", "disagree"):
            sig.measure(share, arm.final(f"{AGREEMENT}/{share}"))
        tolerance = TOLERANCE * math.sqrt(16 / len(seeds))
        sig.claim(f"the seeds' std of accuracy on a test set of 500 is at least {RATIO:g} times their std of "
                  "distribution accuracy", ratio >= RATIO, f"it is {ratio:.2f} times")
        sig.claim(f"the accuracy variance of a test set of 500 is within a factor e^{tolerance:.2f} of the "
                  "independent-errors prediction", abs(log_ratio) <= tolerance,
                  f"observed over predicted is {math.exp(log_ratio):.2f}")
        return sig.verdict()
