"""Lazy versus rich training: scaling a two-layer network's output by alpha
moves it from feature learning (small alpha: the hidden weights travel far
and the hidden representation aligns with the target) to lazy, kernel-like
training (large alpha: the weights barely move and the hidden features stay
those of initialization, so the network fits the data with its initial
tangent kernel).

Setting (Kumar et al.'s grokking-as-lazy-to-rich setting, shrunk to a CPU):
vanilla full-batch gradient descent (SGD without momentum or weight decay,
no minibatches) on a polynomial regression target, the single-index
y = He_2(beta . x) / sqrt(2) on Gaussian inputs in 16 dimensions, fitted by a
two-layer ReLU network f(x) = alpha * a . relu(W x + b) with `mirror_init`
(the output is exactly zero at initialization, so a large alpha does not
start from huge outputs). One arm per alpha, named `alpha=<value>`; every
arm of a seed shares its data and its initial weights, so the comparison
across alpha is paired.

Learning rate: lr = LR0 / alpha^2 (LR0 = 0.05). This is the standard
lazy-training scaling (Chizat, Oyallon & Bach): the tangent kernel of
alpha * h grows as alpha^2, so this lr makes every arm's function-space
dynamics at initialization identical, i.e. gradient flow on the loss
L(alpha h) / alpha^2. Differences between arms then come from how far the
features move, not from a faster or slower clock. LR0 = 0.05 keeps full-batch
GD below the edge of stability of the initial kernel: the lazy arms' train
loss falls monotonically and their weight change scales as 1/alpha (alpha=8
to 32: 3.9x). At width 128, LR0 = 0.1 already put the large-alpha arms at
the edge (period-2 oscillation of the test loss, weight change no longer
~1/alpha) and LR0 = 0.2 made their loss jump 1e3-1e4x in the first steps.

Arms: alpha in {0.5, 2, 8, 32} at both sizes. Sizes: full: 8 seeds, 256
training examples, width 256, 1200 steps; --quick: 4 seeds, 128 examples,
width 128, 800 steps.

Signature, per seed (thresholds set from measured runs, margins beside each;
measured = ranges across seeds of `learnscope run lazy-rich --seeds 16`
("full") and `--quick --seeds 12` ("quick"); seeds 0-7 and 0-3, the default
ensembles, are among them):
- every arm trains: final train loss <= MAX_LOSS_RATIO (0.25) x its initial
  train loss, so the comparison is between networks that all fit the data.
  The largest alpha trains slowest (it is stuck with its initial kernel):
  measured 0.027-0.076 full, 0.032-0.126 quick (margin 2x); the smallest
  alpha reaches 1e-5-1e-3;
- the relative weight change ||theta_T - theta_0|| / ||theta_0|| falls
  strictly as alpha grows, arm after arm (smallest consecutive fall measured
  2.4-2.7x full, 2.3-2.6x quick), and by at least MIN_WEIGHT_CHANGE_FALL
  (10x) from the smallest to the largest alpha (measured 25-32x full,
  26-33x quick; lazy theory predicts ~1/alpha, i.e. up to 64x);
- the centered kernel alignment between the hidden features (site hidden.0)
  and the targets on the training set, at the end of training, falls
  strictly as alpha grows (measured 0.083-0.133 at alpha=0.5 down to
  0.021-0.048 at alpha=32 full, where it started at 0.020-0.048; smallest
  consecutive fall 1.08-1.25x full, 1.09-1.21x quick);
- the largest alpha behaves like its kernel: its change of alignment from
  initialization is at most MAX_KERNEL_SHARE (0.05) of the smallest alpha's
  change (measured 0.0035-0.0066 full, 0.0031-0.0065 quick: margin 7x).
The rich arms also generalize better (final test loss 0.09-0.14 at alpha=0.5
vs 0.25-0.57 at alpha=32, full), Kumar et al.'s point; reported, not checked.

Wall time of training (all arms; the store's run times) on this 2-core CPU
shared with another job: full 48 s, --quick 6.5 s with one torch thread
(OMP_NUM_THREADS=1, as the test suite sets it); with torch's default two
threads the other job's load makes every small step wait for a descheduled
thread, and --quick took 25-84 s (one arm alone 62 s) in three runs.
"""

from __future__ import annotations

import numpy as np

from learnscope import registry
from learnscope.catalog.base import ArmData, Phenomenon, Verdict
from learnscope.spec import Experiment

LR0 = 0.05
MAX_LOSS_RATIO = 0.25
MIN_WEIGHT_CHANGE_FALL = 10.0
MAX_KERNEL_SHARE = 0.05

ALIGNMENT = "kernel_alignment/hidden.0"
ALPHAS = (0.5, 2.0, 8.0, 32.0)  # the same arms at both sizes


def lazy_rich_experiment(alpha: float, quick: bool) -> Experiment:
    if quick:
        samples, width, steps, seeds = 128, 128, 800, 4
    else:
        samples, width, steps, seeds = 256, 256, 1200, 8
    return Experiment.model_validate(
        {
            "task": {"name": "teacher-student", "teacher": "polynomial", "degree": 2, "input_dim": 16,
                     "samples": samples, "test_samples": 1024},
            "model": {"name": "mlp", "hidden": [width], "activation": "relu", "mirror_init": True,
                      "output_scale": alpha},
            "recipe": {"optimizer": "sgd", "lr": LR0 / alpha**2, "momentum": 0.0, "weight_decay": 0.0,
                       "steps": steps, "batch_size": None, "probe_every": 200,
                       "probe_log_points": 8},
            "probes": ["loss", "relative_weight_change",
                       {"name": "kernel_alignment", "site": "hidden.0", "split": "train"}],
            "seeds": seeds,
        }
    )


def _alpha(arm: ArmData) -> float:
    """The arm's output scale, from its stored spec (so `--set` overrides count)."""
    return float(arm.record.spec["model"].get("output_scale", 1.0))


@registry.phenomena.register("lazy-rich")
class LazyRich(Phenomenon):
    summary = ("two-layer net, output scale alpha: weight change and feature-label alignment fall as alpha "
               "grows; large alpha trains like its initial kernel")
    source = (
        "Grokking as the Transition from Lazy to Rich Training Dynamics; "
        "How connectivity structure shapes rich and lazy learning in neural circuits"
    )
    headline = ALIGNMENT

    def arms(self, quick: bool) -> dict[str, Experiment]:
        return {f"alpha={a:g}": lazy_rich_experiment(a, quick) for a in ALPHAS}

    def check(self, arms: dict[str, ArmData]) -> Verdict:
        names = sorted(arms, key=lambda n: _alpha(arms[n]))
        ordered = [arms[n] for n in names]
        alphas = [_alpha(a) for a in ordered]
        seeds = ordered[0].seeds
        if len(set(alphas)) != len(alphas) or len(alphas) < 3:
            why = f"needs at least three arms with distinct alpha (model.output_scale); got {alphas}"
            return self.verdict(seeds, [why] * len(seeds), {})

        change = np.stack([a.final("relative_weight_change") for a in ordered])  # [A, S]
        align_curves = [a.curve(ALIGNMENT)[1] for a in ordered]
        align_end = np.stack([c[:, -1] for c in align_curves])  # [A, S]
        align_moved = np.stack([c[:, -1] - c[:, 0] for c in align_curves])  # [A, S]
        loss_curves = [a.curve("loss/train")[1] for a in ordered]
        loss_ratio = np.stack([c[:, -1] / c[:, 0] for c in loss_curves])  # [A, S]
        change_fall = change[0] / change[-1]
        kernel_share = align_moved[-1] / align_moved[0]

        failures = []
        for s in range(len(seeds)):
            why = ""
            finite = np.isfinite(loss_ratio[:, s]) & np.isfinite(change[:, s]) & np.isfinite(align_end[:, s])
            worst = int(np.argmax(np.where(np.isfinite(loss_ratio[:, s]), loss_ratio[:, s], np.inf)))
            if not finite.all():
                why = f"{names[int(np.argmin(finite))]} diverged (non-finite loss, weight change or alignment)"
            elif loss_ratio[worst, s] > MAX_LOSS_RATIO:
                why = (f"{names[worst]} did not train: final/initial train loss {loss_ratio[worst, s]:.3g} "
                       f"> {MAX_LOSS_RATIO:g}")
            elif not np.all(np.diff(change[:, s]) < 0):
                why = "relative weight change does not fall as alpha grows: " + _series(names, change[:, s])
            elif not change_fall[s] >= MIN_WEIGHT_CHANGE_FALL:
                why = (f"relative weight change falls only {change_fall[s]:.3g}x from {names[0]} to {names[-1]} "
                       f"(< {MIN_WEIGHT_CHANGE_FALL:g}x)")
            elif not np.all(np.diff(align_end[:, s]) < 0):
                why = "final kernel alignment does not fall as alpha grows: " + _series(names, align_end[:, s])
            elif not align_moved[0, s] > 0:
                why = f"{names[0]} did not learn features: its alignment moved {align_moved[0, s]:.3g} from init"
            elif not abs(kernel_share[s]) <= MAX_KERNEL_SHARE:
                why = (f"{names[-1]} is not kernel-like: its alignment moved {align_moved[-1, s]:.3g} vs "
                       f"{align_moved[0, s]:.3g} for {names[0]} (share > {MAX_KERNEL_SHARE:g})")
            failures.append(why)

        measures: dict[str, list[float]] = {}
        for i, n in enumerate(names):
            measures[f"weight change {n}"] = change[i].tolist()
        for i, n in enumerate(names):
            measures[f"final alignment {n}"] = align_end[i].tolist()
        measures["initial alignment"] = align_curves[0][:, 0].tolist()
        measures["smallest consecutive alignment fall"] = (align_end[:-1] / align_end[1:]).min(0).tolist()
        for i, n in enumerate(names):
            measures[f"final/initial train loss {n}"] = loss_ratio[i].tolist()
        measures[f"weight change fall {names[0]} / {names[-1]}"] = change_fall.tolist()
        measures["smallest consecutive weight change fall"] = (change[:-1] / change[1:]).min(0).tolist()
        measures[f"alignment moved {names[-1]} / {names[0]}"] = kernel_share.tolist()
        return self.verdict(seeds, failures, measures)


def _series(names: list[str], values: np.ndarray) -> str:
    return ", ".join(f"{n}: {v:.3g}" for n, v in zip(names, values))
