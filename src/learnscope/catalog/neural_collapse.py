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
accuracy >= FIT_ACCURACY (0.999; with 100-200 examples that is 1.0); the probe
cadence (60 log-spaced probes plus every 250 steps) puts probes 2-4
steps apart around it, so t_fit is resolved and NC1 is read where the
network first fits, not later.

Signature, per seed (thresholds set from measured runs, margins beside each;
measured = ranges across seeds of `learnscope run neural-collapse --seeds 16`
("full") and `--quick --seeds 24` ("quick"); the default ensembles, seeds
0-7 and 0-3, are among them):
- t_fit exists and comes in the first TPT_START_SHARE (1/4) of training
  (measured 12-24 steps of 4000 full, 9-22 of 2000 quick), and train
  accuracy is still >= 0.999 at the end (measured 1.0): nearly all of
  training is terminal phase;
- NC1 falls at least NC1_FALL (10x, the issue's requirement) from t_fit to
  the end (measured 60-168x full, 35-142x quick; NC1 0.21-0.53 ->
  0.0029-0.0041 full, 0.13-0.60 -> 0.0034-0.0059 quick);
- NC2 falls at least NC2_FALL (1.5x) over the same span (measured
  3.7-6.3x full, 2.05-4.1x quick; 0.42-0.66 -> 0.08-0.21);
- NC3 falls at least NC3_FALL (5x) over the same span (measured 40-113x
  full, 19-68x quick; 0.24-0.73 -> 0.005-0.013);
- NC4 at the end >= NC4_FINAL (0.99) (measured 1.000 in every seed).
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
from learnscope.catalog.base import ArmData, Phenomenon, Verdict, first_step
from learnscope.spec import Experiment

FIT_ACCURACY = 0.999
TPT_START_SHARE = 0.25
NC1_FALL = 10.0
NC2_FALL = 1.5
NC3_FALL = 5.0
NC4_FINAL = 0.99


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

    def arms(self, quick: bool) -> dict[str, Experiment]:
        return {"terminal-phase": neural_collapse_experiment(quick)}

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

        failures = []
        for s in range(n):
            if np.isnan(t_fit[s]):
                why = f"train accuracy never reached {FIT_ACCURACY}"
            elif t_fit[s] > TPT_START_SHARE * last_step:
                why = f"train accuracy reached {FIT_ACCURACY} only at step {t_fit[s]:.0f}: too little terminal phase"
            elif not final_acc[s] >= FIT_ACCURACY:
                why = f"train accuracy fell to {final_acc[s]:.4f} during the terminal phase"
            elif not falls["nc1"][s] >= NC1_FALL:
                why = (f"NC1 fell only {falls['nc1'][s]:.3g}x ({at_fit['nc1'][s]:.3g} -> {end['nc1'][s]:.3g}) "
                       f"< {NC1_FALL:g}x")
            elif not falls["nc2"][s] >= NC2_FALL:
                why = (f"NC2 fell only {falls['nc2'][s]:.3g}x ({at_fit['nc2'][s]:.3g} -> {end['nc2'][s]:.3g}) "
                       f"< {NC2_FALL:g}x")
            elif not falls["nc3"][s] >= NC3_FALL:
                why = (f"NC3 fell only {falls['nc3'][s]:.3g}x ({at_fit['nc3'][s]:.3g} -> {end['nc3'][s]:.3g}) "
                       f"< {NC3_FALL:g}x")
            elif not end["nc4"][s] >= NC4_FINAL:
                why = f"NC4 (agreement with nearest class center) is {end['nc4'][s]:.4f} < {NC4_FINAL:g} at the end"
            else:
                why = ""
            failures.append(why)

        measures = {"t_fit": t_fit.tolist()}
        for k in ("nc1", "nc2", "nc3"):
            measures[f"{k} at t_fit"] = at_fit[k].tolist()
            measures[f"{k} at end"] = end[k].tolist()
            measures[f"{k} fall (x)"] = falls[k].tolist()
        measures["nc4 at end"] = end["nc4"].tolist()
        measures["train accuracy at end"] = final_acc.tolist()
        return self.verdict(arm.seeds, failures, measures)
