"""Neural collapse: trained far past zero training error (the terminal phase),
a classifier's penultimate features collapse onto their class means (NC1),
the centered means approach a simplex equiangular tight frame (NC2), the
classifier's weights align with the means (NC3), and the network's decisions
become those of the nearest-class-center rule (NC4).

Setting, after Papyan, Han & Donoho's recipe (cross-entropy, SGD with
momentum 0.9 and weight decay, balanced classes no more numerous than the
penultimate width, training long after the training error reaches zero):
a 10-class isotropic Gaussian mixture (class means at distance 4 noise
standard deviations from the origin; exactly balanced classes), an MLP with two hidden ReLU layers of width 128
(the second is the penultimate site), minibatch SGD. The `neural_collapse`
probe measures NC1-NC4 on the whole training split (it holds fewer examples
than the probe's max_examples), `accuracy` and `loss` on train and test.

Two choices are forced by what we measured, and stated here:
- The input dimension is well above the number of training examples (full:
  1024 dims, 200 examples; --quick: 512 dims, 100 examples). With an MLP on a
  Gaussian mixture, the level NC1 settles at grows with examples / dimension
  (measured with 10 classes, full-batch, 3000 steps: 0.029 at 100/128, 0.011
  at 50/128, 0.010 at 100/256, 0.004 at 100/512): the network can cancel each example's
  within-class noise cheaply only when the examples are few next to the
  dimensions, which is the role the very expressive networks of the neural-
  collapse papers play. At 1024 examples in 32 dims (separation 3) NC1 did
  not fall at all in the terminal phase (0.6-0.7 at t_fit, 0.6-0.9 at the
  end).
- Weight decay 5e-3 rather than the paper's 5e-4: with lr 0.05 and momentum
  0.9 the weight-decay time scale is (1 - 0.9) / (lr * wd) = 400 steps, so
  the terminal phase fits a CPU budget; at 5e-4 (4000 steps) NC1 fell only
  ~3x in 3000 steps (100 examples in 128 dims). Adam and AdamW did not
  collapse here at all (NC1 rose, and NC4 ended at 0.2-0.96 with train
  accuracy 1.0), so this entry uses SGD.

The terminal phase starts at t_fit, the first probed step with train
accuracy >= FIT_ACCURACY (with 100-200 examples that is 1.0); the probe
cadence (60 log-spaced probes plus every 250 steps) puts probes 2-4
steps apart around it, so t_fit is resolved and NC1 is read where the
network first fits, not later.

Signature, per seed. The thresholds, with the ranges measured across seeds
of `learnscope run neural-collapse --seeds 16` ("full") and `--quick
--seeds 24` ("quick") when they were set (the default ensembles, seeds 0-7
and 0-3, are among them), are data on the phenomenon (`learnscope list
neural-collapse`):
- t_fit exists and comes in the first TPT_START_SHARE of training, and
  train accuracy is still >= FIT_ACCURACY at the end: nearly all of
  training is terminal phase;
- NC1 falls at least NC1_FALL (10x, the issue's requirement) from t_fit to
  the end (NC1 measured 0.21-0.53 -> 0.0029-0.0041 full, 0.13-0.60 ->
  0.0034-0.0059 quick);
- NC2 falls at least NC2_FALL over the same span (0.42-0.66 -> 0.08-0.21);
- NC3 falls at least NC3_FALL over the same span (0.24-0.73 ->
  0.005-0.013);
- NC4 at the end >= NC4_FINAL.
History: with class sizes drawn i.i.d. (an earlier version of the task) the
least balanced seeds (a class of 1-3 training examples) collapsed least
(NC2 1.55x, NC3 3.2x), and the NC2/NC3 factors then stood at 1.2x/2x. The
task now makes classes exactly balanced, every seed collapses further, and
the factors were raised to stay below the worst seed with margin. Test
accuracy is about 0.6 (full): 20 examples a class in 1024 dimensions
generalize only partly; neural collapse is a statement about the training
features.

Wall time of training on this 2-core CPU: full about 30 s, --quick about
5 s (machine otherwise idle). With torch's default thread pool on a machine
loaded by another job, small steps pay for thread synchronization (one
--quick run took 217 s); the test suite uses one thread per process.
"""

from __future__ import annotations

import numpy as np

from learnscope import registry
from learnscope.catalog.base import Arm, Phenomenon
from learnscope.results import ArmData, Threshold, Verdict, first_step
from learnscope.spec import Experiment

FIT_ACCURACY = Threshold(0.999, "FIT_ACCURACY", "train accuracy at t_fit, where the terminal phase starts, and "
                         "still at the end", "train accuracy at end", full=(1.0, 1.0), quick=(1.0, 1.0),
                         seeds={"full": 16, "quick": 24})
TPT_START_SHARE = Threshold(0.25, "TPT_START_SHARE", "largest t_fit / training steps: nearly all of training is "
                            "terminal phase (t_fit 12-24 of 4000 steps full, 9-22 of 2000 quick)",
                            full=(0.003, 0.006), quick=(0.0045, 0.011), seeds={"full": 16, "quick": 24})
NC1_FALL = Threshold(10.0, "NC1_FALL", "least fall of NC1 (within-class variability) from t_fit to the end",
                     "nc1 fall (x)", full=(60, 168), quick=(35, 142), seeds={"full": 16, "quick": 24})
NC2_FALL = Threshold(1.5, "NC2_FALL", "least fall of NC2 (distance of the class means from a simplex ETF) from "
                     "t_fit to the end", "nc2 fall (x)", full=(3.7, 6.3), quick=(2.05, 4.1),
                     seeds={"full": 16, "quick": 24})
NC3_FALL = Threshold(5.0, "NC3_FALL", "least fall of NC3 (misalignment of classifier and class means) from t_fit "
                     "to the end", "nc3 fall (x)", full=(40, 113), quick=(19, 68), seeds={"full": 16, "quick": 24})
NC4_FINAL = Threshold(0.99, "NC4_FINAL", "least NC4 at the end: agreement with the nearest-class-center rule",
                      "nc4 at end", full=(1.0, 1.0), quick=(1.0, 1.0), seeds={"full": 16, "quick": 24})


def neural_collapse_experiment(quick: bool) -> Experiment:
    if quick:
        dim, samples, batch, steps, log_points, seeds = 512, 100, 25, 2000, 60, 4
    else:
        dim, samples, batch, steps, log_points, seeds = 1024, 200, 50, 4000, 60, 8
    return Experiment.model_validate(
        {
            "task": {"name": "gaussian-mixture", "classes": 10, "dim": dim, "separation": 4.0,
                     "samples": samples, "test_samples": 500},
            "model": {"name": "mlp", "hidden": [128, 128], "activation": "relu"},
            "recipe": {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-3,
                       "steps": steps, "batch_size": batch, "probe_every": 250, "probe_log_points": log_points},
            "probes": ["accuracy", "loss", {"name": "neural_collapse", "split": "train"}],
            "seeds": seeds,
        }
    )


@registry.phenomena.register("neural-collapse")
class NeuralCollapsePhenomenon(Phenomenon):
    summary = ("terminal phase: features collapse to class means (NC1 falls >= 10x), means near a simplex ETF, "
               "classifier aligned, nearest-class-center decisions")
    source = (
        "Perturbation Analysis of Neural Collapse; "
        "Neural Collapse in Deep Linear Networks: From Balanced to Imbalanced Data; "
        "Linguistic Collapse: Neural Collapse in (Large) Language Models"
    )
    headline = "nc1"
    thresholds = (FIT_ACCURACY, TPT_START_SHARE, NC1_FALL, NC2_FALL, NC3_FALL, NC4_FINAL)

    def arms(self, quick: bool) -> list[Arm]:
        return [Arm("terminal-phase", neural_collapse_experiment(quick))]

    def check(self, arms: dict[str, ArmData]) -> Verdict:
        arm = arms["terminal-phase"]
        steps, train_acc = arm.curve("accuracy/train")
        t_fit = first_step(steps, train_acc, FIT_ACCURACY)
        curves = {k: arm.curve(k)[1] for k in ("nc1", "nc2", "nc3", "nc4")}
        last_step = float(steps[-1])
        n = len(arm.seeds)
        at_fit = {k: np.full(n, np.nan) for k in curves}
        for s in range(n):
            if not np.isnan(t_fit[s]):
                i = int(np.searchsorted(steps, t_fit[s]))
                for k in curves:
                    at_fit[k][s] = curves[k][s, i]
        end = {k: v[:, -1] for k, v in curves.items()}
        falls = {k: at_fit[k] / end[k] for k in ("nc1", "nc2", "nc3")}
        final_acc = train_acc[:, -1]

        sig = self.signature(arm.seeds)
        sig.measure("t_fit", t_fit)
        for k in ("nc1", "nc2", "nc3"):
            sig.measure(f"{k} at t_fit", at_fit[k])
            sig.measure(f"{k} at end", end[k])
            sig.measure(f"{k} fall (x)", falls[k])
        sig.measure("nc4 at end", end["nc4"])
        sig.measure("train accuracy at end", final_acc)

        sig.claim(f"train accuracy reaches {FIT_ACCURACY}", ~np.isnan(t_fit),
                  f"train accuracy never reached {FIT_ACCURACY}")
        sig.claim(f"t_fit comes in the first {TPT_START_SHARE:g} of training",
                  ~(t_fit > TPT_START_SHARE * last_step),
                  f"train accuracy reached {FIT_ACCURACY} only at step {{0:.0f}}: too little terminal phase", t_fit)
        sig.claim(f"train accuracy is still >= {FIT_ACCURACY} at the end", final_acc >= FIT_ACCURACY,
                  "train accuracy fell to {0:.4f} during the terminal phase", final_acc)
        for k, least in (("nc1", NC1_FALL), ("nc2", NC2_FALL), ("nc3", NC3_FALL)):
            sig.claim(f"{k.upper()} falls >= {least:g}x from t_fit to the end", falls[k] >= least,
                      f"{k.upper()} fell only {{0:.3g}}x ({{1:.3g}} -> {{2:.3g}}) < {least:g}x",
                      falls[k], at_fit[k], end[k])
        sig.claim(f"NC4 (agreement with nearest class center) is >= {NC4_FINAL:g} at the end",
                  end["nc4"] >= NC4_FINAL,
                  f"NC4 (agreement with nearest class center) is {{0:.4f}} < {NC4_FINAL:g} at the end", end["nc4"])
        return sig.verdict()
