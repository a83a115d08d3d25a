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
start from huge outputs). One arm per alpha, named `alpha-<value>` (`alpha-0.5`:
arm names hold no `=`, which `--set ARM:key=value` parses); the measures
name each arm by its alpha, read from its spec (`alpha=0.5`). Every
arm of a seed shares its data and its initial weights, so the comparison
across alpha is paired.

Learning rate: lr = LR0 / alpha^2 (LR0 = 0.05). This is the standard
lazy-training scaling (Chizat, Oyallon & Bach): the tangent kernel of
alpha * h grows as alpha^2, so this lr makes every arm's function-space
dynamics at initialization identical, i.e. gradient flow on the loss
L(alpha h) / alpha^2. Differences between arms then come from how far the
features move, not from a faster or slower clock; so the output scale and
the learning rate move together (`moves_together`). LR0 = 0.05 keeps
full-batch GD below the edge of stability of the initial kernel: the lazy
arms' train loss falls monotonically and their weight change scales as
1/alpha (alpha=8 to 32: 3.9x). At width 128, LR0 = 0.1 already put the
large-alpha arms at the edge (period-2 oscillation of the test loss, weight
change no longer ~1/alpha) and LR0 = 0.2 made their loss jump 1e3-1e4x in
the first steps.

Arms: alpha in {0.5, 2, 8, 32} at both sizes. Sizes: full: 8 seeds, 256
training examples, width 256, 1200 steps; --quick: 4 seeds, 128 examples,
width 128, 800 steps.

Signature, per seed. The thresholds, with the ranges measured across seeds
of `learnscope run lazy-rich --seeds 16` ("full") and `--quick --seeds 12`
("quick") when they were set (seeds 0-7 and 0-3, the default ensembles,
are among them), are data on the phenomenon (`learnscope list lazy-rich`);
the margin to the worst seed is about 2x for MAX_LOSS_RATIO and 7x for
MAX_KERNEL_SHARE:
- every arm trains: final train loss <= MAX_LOSS_RATIO x its initial train
  loss, so the comparison is between networks that all fit the data. The
  largest alpha trains slowest (it is stuck with its initial kernel); the
  smallest alpha reaches 1e-5-1e-3;
- the relative weight change ||theta_T - theta_0|| / ||theta_0|| falls
  strictly as alpha grows, arm after arm (smallest consecutive fall measured
  2.4-2.7x full, 2.3-2.6x quick), and by at least MIN_WEIGHT_CHANGE_FALL
  from the smallest to the largest alpha (lazy theory predicts ~1/alpha,
  i.e. up to 64x);
- the centered kernel alignment between the hidden features (site hidden.0)
  and the targets on the training set, at the end of training, falls
  strictly as alpha grows (measured 0.083-0.133 at alpha=0.5 down to
  0.021-0.048 at alpha=32 full, where it started at 0.020-0.048; smallest
  consecutive fall 1.08-1.25x full, 1.09-1.21x quick);
- the largest alpha behaves like its kernel: its change of alignment from
  initialization is at most MAX_KERNEL_SHARE of the smallest alpha's change.
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
from learnscope.catalog.base import Arm, Phenomenon
from learnscope.results import ArmData, Threshold, Verdict
from learnscope.spec import Experiment

LR0 = 0.05
MAX_LOSS_RATIO = Threshold(0.25, "MAX_LOSS_RATIO", "largest final / initial train loss of any arm: every arm trains",
                           "final/initial train loss alpha=32", full=(0.027, 0.076), quick=(0.032, 0.126),
                           seeds={"full": 16, "quick": 12})
MIN_WEIGHT_CHANGE_FALL = Threshold(10.0, "MIN_WEIGHT_CHANGE_FALL",
                                   "least fall of the relative weight change from the smallest to the largest alpha",
                                   "weight change fall alpha=0.5 / alpha=32", full=(25, 32), quick=(26, 33),
                                   seeds={"full": 16, "quick": 12})
MAX_KERNEL_SHARE = Threshold(0.05, "MAX_KERNEL_SHARE",
                             "largest |change of alignment from init| of the largest alpha, as a share of the "
                             "smallest alpha's: the largest alpha stays at its initial kernel",
                             "alignment moved alpha=32 / alpha=0.5", full=(0.0035, 0.0066), quick=(0.0031, 0.0065),
                             seeds={"full": 16, "quick": 12})

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


def arm_name(alpha: float) -> str:
    """The arm of an output scale: `alpha-0.5` (arm names hold no ':' or '=', which `--set ARM:key=value` parses)."""
    return f"alpha-{alpha:g}"


def _alpha(arm: ArmData) -> float:
    """The arm's output scale, from its stored spec (so `--set` overrides count)."""
    return float(getattr(arm.experiment.model, "output_scale", 1.0))  # 1 for a model without one


@registry.phenomena.register("lazy-rich")
class LazyRich(Phenomenon):
    summary = ("two-layer net, output scale alpha: weight change and feature-label alignment fall as alpha "
               "grows; large alpha trains like its initial kernel")
    source = (
        "Grokking as the Transition from Lazy to Rich Training Dynamics; "
        "How connectivity structure shapes rich and lazy learning in neural circuits"
    )
    headline = ALIGNMENT
    thresholds = (MAX_LOSS_RATIO, MIN_WEIGHT_CHANGE_FALL, MAX_KERNEL_SHARE)
    moves_together = (("model.output_scale", "recipe.lr"),)  # lr = LR0 / alpha^2

    def arms(self, quick: bool) -> list[Arm]:
        first = Arm(arm_name(ALPHAS[0]), lazy_rich_experiment(ALPHAS[0], quick))
        return [first, *(first.derive(arm_name(a), {"model.output_scale": a, "recipe.lr": LR0 / a**2})
                         for a in ALPHAS[1:])]

    def check(self, arms: dict[str, ArmData]) -> Verdict:
        ordered = sorted(arms.values(), key=_alpha)
        alphas = [_alpha(a) for a in ordered]
        names = [f"alpha={a:g}" for a in alphas]  # the measures name an arm by its alpha
        sig = self.signature(ordered[0].seeds)
        if len(set(alphas)) != len(alphas) or len(alphas) < 3:
            return sig.fail_all(f"needs at least three arms with distinct alpha (model.output_scale); got {alphas}")

        change = np.stack([a.final("relative_weight_change") for a in ordered])  # [A, S]
        align_curves = [a.curve(ALIGNMENT)[1] for a in ordered]
        align_end = np.stack([c[:, -1] for c in align_curves])  # [A, S]
        align_moved = np.stack([c[:, -1] - c[:, 0] for c in align_curves])  # [A, S]
        loss_curves = [a.curve("loss/train")[1] for a in ordered]
        loss_ratio = np.stack([c[:, -1] / c[:, 0] for c in loss_curves])  # [A, S]
        change_fall = change[0] / change[-1]
        kernel_share = align_moved[-1] / align_moved[0]
        finite = np.isfinite(loss_ratio) & np.isfinite(change) & np.isfinite(align_end)  # [A, S]
        worst = np.argmax(np.where(np.isfinite(loss_ratio), loss_ratio, np.inf), axis=0)  # [S]
        worst_ratio = loss_ratio[worst, np.arange(loss_ratio.shape[1])]

        for i, n in enumerate(names):
            sig.measure(f"weight change {n}", change[i])
        for i, n in enumerate(names):
            sig.measure(f"final alignment {n}", align_end[i])
        sig.measure("initial alignment", align_curves[0][:, 0])
        sig.measure("smallest consecutive alignment fall", (align_end[:-1] / align_end[1:]).min(0))
        for i, n in enumerate(names):
            sig.measure(f"final/initial train loss {n}", loss_ratio[i])
        sig.measure(f"weight change fall {names[0]} / {names[-1]}", change_fall)
        sig.measure("smallest consecutive weight change fall", (change[:-1] / change[1:]).min(0))
        sig.measure(f"alignment moved {names[-1]} / {names[0]}", kernel_share)

        sig.claim("every arm's loss, weight change and alignment stay finite", finite.all(axis=0),
                  lambda s: f"{names[int(np.argmin(finite[:, s]))]} diverged "
                            f"(non-finite loss, weight change or alignment)")
        sig.claim(f"every arm trains: final/initial train loss <= {MAX_LOSS_RATIO:g}",
                  ~(worst_ratio > MAX_LOSS_RATIO),
                  lambda s: f"{names[worst[s]]} did not train: final/initial train loss {worst_ratio[s]:.3g} "
                            f"> {MAX_LOSS_RATIO:g}")
        sig.claim("the relative weight change falls strictly as alpha grows",
                  np.all(np.diff(change, axis=0) < 0, axis=0),
                  lambda s: "relative weight change does not fall as alpha grows: " + _series(names, change[:, s]))
        sig.claim(f"the relative weight change falls >= {MIN_WEIGHT_CHANGE_FALL:g}x from {names[0]} to {names[-1]}",
                  change_fall >= MIN_WEIGHT_CHANGE_FALL,
                  f"relative weight change falls only {{0:.3g}}x from {names[0]} to {names[-1]} "
                  f"(< {MIN_WEIGHT_CHANGE_FALL:g}x)", change_fall)
        sig.claim("the final kernel alignment falls strictly as alpha grows",
                  np.all(np.diff(align_end, axis=0) < 0, axis=0),
                  lambda s: "final kernel alignment does not fall as alpha grows: " + _series(names, align_end[:, s]))
        sig.claim(f"{names[0]} learns features: its alignment rises from init", align_moved[0] > 0,
                  f"{names[0]} did not learn features: its alignment moved {{0:.3g}} from init", align_moved[0])
        sig.claim(f"{names[-1]} is kernel-like: its alignment moves at most {MAX_KERNEL_SHARE:g} of {names[0]}'s",
                  np.abs(kernel_share) <= MAX_KERNEL_SHARE,
                  f"{names[-1]} is not kernel-like: its alignment moved {{0:.3g}} vs "
                  f"{{1:.3g}} for {names[0]} (share > {MAX_KERNEL_SHARE:g})", align_moved[-1], align_moved[0])
        return sig.verdict()


def _series(names: list[str], values: np.ndarray) -> str:
    return ", ".join(f"{n}: {v:.3g}" for n, v in zip(names, values))
