"""Model-wise double descent, and its dependence on optimization: with label
noise, the test error of a random-features model peaks where its width
times its outputs equals the number of training examples (the interpolation
threshold), but only once the optimizer has reached a low training loss;
with far fewer steps the same widths show no peak, or a much smaller one.

Liu & Flanigan, "Understanding the Role of Optimization in Double Descent":
double descent is observed iff the optimizer finds a sufficiently low-loss
minimum; near the threshold the feature matrix is ill-conditioned (its
smallest singular values near zero), so gradient descent fits the
directions that amplify the noise last, and a shorter run acts as
regularization that flattens the peak.

Setting: teacher-student regression (input dimension 16, a random two-layer
ReLU teacher of 8 units, unit-variance targets), n = 50 training examples
whose targets carry Gaussian noise of std 1.0 (the test targets are clean);
the model `random-features` (a fixed random ReLU layer of `width` units, a
trained linear readout from zero, one output); full-batch SGD with momentum
0.9, lr 2, no weight decay (heavy-ball momentum, so that a one-thread
budget of steps reaches a low loss at the threshold, whose small singular
values plain gradient descent fits slowest); the test error is the test
mean squared error (`loss/test`).

Arms, same seeds: one per width, `width-5`, `width-25`, `width-40`,
`width-50`, `width-65`, `width-100`, `width-200`, `width-500`; `width-50` is
the interpolation threshold (width x 1 output = n). Each arm trains for the
long budget (800 steps quick, 3000 full) and is probed every 25 steps. The
short budget is read off the same runs at step SHORT_STEPS (25): with a
constant learning rate and full batches nothing in a step depends on the
run's length, so a run's state at step 25 is exactly that of a 25-step run.

Signature, per seed (peak height = the test error at `width-50` over the
larger of the smallest and largest width's, `width-5` and `width-500`):
- a peak at the long budget: the height is at least PEAK (2.0);
- the peak shrinks with the short budget: the excess of the threshold
  width's test error over the larger end, at step 25, is at most SHRINK
  (0.5) times that excess at the long budget.
Recorded too: the training loss at `width-50` at both budgets (how low the
optimizer got) and the width of the highest test error.

Measured (quick: 4 seeds, 800 steps, 500 test examples; full: 8 seeds,
3000 steps, 1000 test examples; the ranges are also on the thresholds,
`learnscope list double-descent`): the peak height is 3.54-5.29 (quick) and
4.83-24.5 (full) (seeds 0-15: 2.84-12.0 quick, 4.53-24.5 full); the share
of the excess kept at step 25 is -0.046-0.279 (quick) and 0.0092-0.0425
(full) (seeds 0-15: -0.046-0.279 quick, -0.085-0.099 full; negative: at
step 25 the threshold width is below the ends, no peak at all). The
training loss at the threshold width is 0.27-0.88 after 25 steps, against
0.015-0.21 at the long budget (seeds 0-15, both sizes; noise variance 1.0), and the highest test
error falls at widths 40-65 in every seed. Every one of seeds 0-15 holds
at both sizes. Wall time, one thread: quick 6.9 s of CPU (17 s wall on
this 2-core VM while other jobs ran), full 23 s of CPU (55 s wall, as
loaded).
"""

from __future__ import annotations

import numpy as np

from learnscope import registry
from learnscope.catalog.base import Arm, Figure, Phenomenon
from learnscope.results import ArmData, Bands, Threshold, Verdict
from learnscope.spec import Experiment

TRAIN_EXAMPLES = 50
WIDTHS = (5, 25, 40, 50, 65, 100, 200, 500)
THRESHOLD_WIDTH = min(WIDTHS, key=lambda w: abs(w - TRAIN_EXAMPLES))  # width x 1 output = n
SHORT_STEPS = 25
TEST = "loss/test"

SEEDS_MEASURED = {"full": 8, "quick": 4}
PEAK = Threshold(2.0, "PEAK", "least test error at the threshold width over the larger end's, at the long budget",
                 "peak height", full=(4.83, 24.5), quick=(3.54, 5.29), seeds=SEEDS_MEASURED)
SHRINK = Threshold(0.5, "SHRINK", "most the threshold width's excess test error over the larger end may keep "
                   f"at step {SHORT_STEPS}, as a share of its excess at the long budget",
                   "short excess share", full=(0.0092, 0.0425), quick=(-0.0456, 0.279), seeds=SEEDS_MEASURED)


def arm_name(width: int) -> str:
    return f"width-{width}"


def width_experiment(width: int, quick: bool) -> Experiment:
    return Experiment.model_validate({
        "task": {"name": "teacher-student", "teacher": "mlp", "input_dim": 16, "width": 8,
                 "samples": TRAIN_EXAMPLES, "test_samples": 500 if quick else 1000, "noise": 1.0},
        "model": {"name": "random-features", "width": width},
        "recipe": {"optimizer": "sgd", "lr": 2.0, "momentum": 0.9, "weight_decay": 0.0,
                   "steps": 800 if quick else 3000, "probe_every": SHORT_STEPS, "probe_log_points": 0},
        "probes": ["loss"],
        "seeds": list(range(4 if quick else 8)),
    })


def at_step(arm: ArmData, name: str, step: int) -> np.ndarray | None:
    """Per seed, the value of `name` probed at `step` (None: not probed then)."""
    steps, values = arm.curve(name)
    hits = np.flatnonzero(steps == step)
    return values[:, hits[0]] if hits.size else None


@registry.phenomena.register("double-descent")
class DoubleDescent(Phenomenon):
    summary = ("with noisy training targets the test error of random features peaks at the interpolation threshold "
               "(width x outputs = training examples) once the optimizer reaches a low loss; far fewer steps "
               "flatten the peak")
    source = "Understanding the Role of Optimization in Double Descent"
    headline = TEST
    thresholds = (PEAK, SHRINK)
    # the widths are placed around the training set's size; the short budget is a probe step of a
    # constant-rate run (a schedule over the whole run would make step 25 no 25-step run)
    fixed = ("task.samples", "recipe.schedule", "recipe.probe_every")

    def arms(self, quick: bool) -> list[Arm]:
        return [Arm(arm_name(width), width_experiment(width, quick)) for width in WIDTHS]

    def test_errors(self, arms: dict[str, ArmData], step: int | None) -> np.ndarray | None:
        """[widths, S]: each width's test error at `step` (None: the last step)."""
        rows = []
        for width in WIDTHS:
            arm = arms[arm_name(width)]
            row = arm.final(TEST) if step is None else at_step(arm, TEST, step)
            if row is None:
                return None
            rows.append(row)
        return np.stack(rows)

    def check(self, arms: dict[str, ArmData]) -> Verdict:
        threshold = arms[arm_name(THRESHOLD_WIDTH)]
        sig = self.signature(threshold.seeds)
        long_steps = int(threshold.curve(TEST)[0][-1])
        short = self.test_errors(arms, SHORT_STEPS)
        if long_steps <= SHORT_STEPS or short is None:
            return sig.fail_all(f"the arms were not probed at step {SHORT_STEPS} before their last step "
                                f"({long_steps}): the short budget cannot be read")
        long = self.test_errors(arms, None)
        assert long is not None
        at = WIDTHS.index(THRESHOLD_WIDTH)
        long_ends, short_ends = np.maximum(long[0], long[-1]), np.maximum(short[0], short[-1])
        height = sig.measure("peak height", long[at] / long_ends)
        long_excess = sig.measure("long excess", long[at] - long_ends)
        short_excess = sig.measure("short excess", short[at] - short_ends)
        with np.errstate(divide="ignore", invalid="ignore"):  # no excess at the long budget: no peak, claimed below
            share = sig.measure("short excess share", short_excess / long_excess)
        sig.measure("short peak height", short[at] / short_ends)
        sig.measure("threshold train loss, short", at_step(threshold, "loss/train", SHORT_STEPS))
        sig.measure("threshold train loss, long", threshold.final("loss/train"))
        sig.measure("peak width", np.asarray(WIDTHS)[np.argmax(long, axis=0)])
        sig.claim(f"at {long_steps} steps the test error at width {THRESHOLD_WIDTH} is at least {PEAK:g} x the "
                  f"larger of widths {WIDTHS[0]} and {WIDTHS[-1]}", height >= PEAK,
                  "no peak: the test error at the threshold is {0:.2f} x the larger end's", height)
        sig.claim(f"at {SHORT_STEPS} steps the peak keeps at most {SHRINK:g} of its excess at {long_steps} steps",
                  (long_excess > 0) & (share <= SHRINK),
                  "the peak did not shrink: excess {0:.3f} at {1} steps against {2:.3f} at the long budget",
                  short_excess, SHORT_STEPS, long_excess)
        return sig.verdict()

    def figures(self, arms: dict[str, ArmData]) -> list[Figure]:
        # Bands, not Sweep: a Sweep's axis is drawn for shares in [0, 1], and test errors run past 1
        long_steps = int(arms[arm_name(THRESHOLD_WIDTH)].curve(TEST)[0][-1])
        x = np.log2(np.asarray(WIDTHS, dtype=float) / TRAIN_EXAMPLES)
        lines = []
        for label, step in ((f"after {SHORT_STEPS} steps", SHORT_STEPS), (f"after {long_steps} steps", None)):
            errors = self.test_errors(arms, step)
            if errors is not None:
                lines.append((label, x, errors.T))
        return [Bands("double-descent: test error against width, after few and after many steps",
                      "test mean squared error (line: mean of seeds; band: lowest to highest)",
                      f"log2(width / n), n = {TRAIN_EXAMPLES} training examples (0: the threshold)",
                      "test error", lines)]
