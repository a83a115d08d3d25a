"""Gradient ascent's collapse: ascending the loss of the forget set unlearns
it, but nothing stops the ascent once it has — as its steps grow, the
model's utility on what it should keep collapses towards chance.

Setting (catalog/unlearning.py, "canaries"): original and retrain oracle on
a 4-class Gaussian mixture with memorized wrong-label canaries as the
forget set; gradient ascent (−loss on the whole forget set, full-batch SGD,
lr 0.05) from the original for 300 steps, probed at 24 log-spaced steps
(CANARY_LOG_PROBES).

What "forget quality reaches the oracle's" means here. The oracle predicts
a canary's true class, so its forget accuracy (agreement with the wrong
label) is 0.00-0.08; gradient ascent only pushes away from the wrong label,
towards no class in particular, and its forget accuracy bottoms out at
0.06-0.28 (chance is 0.25) as the model collapses onto one or two classes.
The measure that puts both on one scale is the membership AUC (the
loss-threshold attack, forget set against holdout, MUSE's privacy axis):
0.96-1.00 on the original, 0.5 up to noise on the oracle.

Signature, per seed:
- the original memorized the canaries: forget accuracy >= MEMORIZED;
- gradient ascent brings the attack down to the oracle's level: its lowest
  membership AUC along the steps is at most the oracle's + AUC_TOLERANCE
  (the difference of two independent AUCs at chance has a standard
  deviation of 0.07 at --quick, 0.05 at full);
- utility is intact while it forgets: when forget accuracy first comes down
  to HALF_FORGOTTEN (interpolated between probes), retain accuracy is
  >= INTACT;
- and collapses as the steps grow: at the end (300 steps) retain accuracy
  is at most COLLAPSE_SHARE of the way from chance (0.25) to the
  original's (1.0), i.e. <= 0.625 for an original at 1.0.
The thresholds, with the ranges measured across seeds when they were set
(`learnscope run ga-collapse --seeds 24` and `--quick --seeds 24`, the
default seeds among them, with the 24 log-spaced probes of
CANARY_LOG_PROBES), are data on the phenomenon (`learnscope list
ga-collapse`). Beside them (24 seeds, full / quick): the lowest membership
AUC is 0.408-0.501 / 0.342-0.490, reached at the oracle's level at probed
steps 7-16 / 8-19 (6-14 / 8-17 with a probe at every step, where retain
accuracy at half forgotten is 0.955-1.000 quick); retain accuracy first
comes down to the collapse level at probed steps 7-68 / 8-55 (7-62 /
8-47), and test accuracy ends at 0.250-0.463.
Its privacy leakage at the end (derived, MUSE's sign) is positive,
over-unlearning: mean +0.058 (95% CI [+0.019, +0.097]) full, +0.117
([+0.055, +0.180]) quick, -0.12 to +0.34 / -0.12 to +0.48 by seed (24
seeds).
Beyond the budget the ascent goes on: the weights grow exponentially and
every seed's loss overflows, at steps 460-567 (full, 8 seeds) and 419-544
(quick, 8 seeds), after which a seed is frozen as diverged and left out
of statistics and signatures; the 300-step budget ends 119 steps before
the first.

Wall time (`learnscope verify`, this 2-core machine, one torch thread, the
process's start included): full 8 s, --quick 3 s.
"""

from __future__ import annotations

import numpy as np

from learnscope import registry
from learnscope.catalog.base import Arm
from learnscope.catalog.unlearning import (
    AUC,
    CANARY_CHANCE,
    CANARY_COMPARISON,
    GA,
    ORACLE,
    ORIGINAL,
    UnlearningPhenomenon,
    canary_arms,
    canary_size,
    crossing,
)
from learnscope.results import ArmData, Threshold, Verdict, first_step

SEEDS_MEASURED = {"full": 24, "quick": 24}
MEMORIZED = Threshold(0.9, "MEMORIZED", "the original's least forget accuracy: it memorized the canaries",
                      "original forget accuracy", full=(0.945, 1.0), quick=(0.984, 1.0), seeds=SEEDS_MEASURED)
AUC_TOLERANCE = Threshold(0.1, "AUC_TOLERANCE", "most by which gradient ascent's lowest membership AUC along the "
                          "steps may exceed the oracle's", "lowest AUC - oracle AUC", full=(-0.147, 0.042),
                          quick=(-0.212, 0.020), seeds=SEEDS_MEASURED)
HALF_FORGOTTEN = Threshold(0.5, "HALF_FORGOTTEN", "forget accuracy at which retain accuracy is read (the first "
                           "crossing, interpolated between probes)")
INTACT = Threshold(0.9, "INTACT", "least retain accuracy when forget accuracy first comes down to HALF_FORGOTTEN",
                   "retain accuracy at half forgotten", full=(0.975, 1.0), quick=(0.926, 1.0), seeds=SEEDS_MEASURED)
COLLAPSE_SHARE = Threshold(0.5, "COLLAPSE_SHARE", "collapsed: retain accuracy at most this share of the way from "
                           "chance to the original's (the final retain accuracy's bound, 0.625 for an original at 1)",
                           "final retain accuracy", full=(0.239, 0.455), quick=(0.232, 0.458), seeds=SEEDS_MEASURED)


def collapse_level(original_retain: np.ndarray, chance: float = CANARY_CHANCE) -> np.ndarray:
    """Per seed, the retain accuracy at or below which utility has collapsed."""
    return chance + COLLAPSE_SHARE * (original_retain - chance)


@registry.phenomena.register("ga-collapse")
class GACollapse(UnlearningPhenomenon):
    summary = ("canaries: gradient ascent brings the membership attack down to the oracle's level, then retain "
               "accuracy collapses towards chance as its steps grow")
    source = ("MUSE: Machine Unlearning Six-Way Evaluation for Language Models; Negative Preference Optimization: "
              "From Catastrophic Collapse to Effective Unlearning")
    headline = "accuracy/retain"
    comparison = CANARY_COMPARISON
    tradeoffs = (("accuracy/forget", "accuracy/retain"), (AUC, "accuracy/test"))
    thresholds = (MEMORIZED, AUC_TOLERANCE, HALF_FORGOTTEN, INTACT, COLLAPSE_SHARE)

    def arms(self, quick: bool) -> list[Arm]:
        return canary_arms(canary_size(quick), [GA])

    def check(self, arms: dict[str, ArmData]) -> Verdict:
        original, oracle, ga = arms[ORIGINAL], arms[ORACLE], arms[GA]
        memorized = original.final("accuracy/forget")
        steps, auc = ga.curve(AUC)
        _, forget = ga.curve("accuracy/forget")
        _, retain = ga.curve("accuracy/retain")
        lowest_auc = np.nanmin(auc, axis=1)
        excess = lowest_auc - oracle.final(AUC)
        reached = first_step(steps, auc, oracle.final(AUC) + AUC_TOLERANCE, below=True)
        _, retain_at_half = crossing(steps, forget, HALF_FORGOTTEN, retain)
        level = collapse_level(original.final("accuracy/retain"))
        final_retain = retain[:, -1]
        sig = self.signature(ga.seeds)
        sig.measure("original forget accuracy", memorized)
        sig.measure("lowest membership AUC", lowest_auc)
        sig.measure("lowest AUC - oracle AUC", excess)
        sig.measure("step AUC reaches the oracle's", reached)
        sig.measure("lowest forget accuracy", np.nanmin(forget, axis=1))
        sig.measure("retain accuracy at half forgotten", retain_at_half)
        sig.measure("final retain accuracy", final_retain)
        sig.measure("final test accuracy", ga.final("accuracy/test"))
        sig.measure("collapse level", level)
        sig.measure("collapse step", first_step(steps, retain, level, below=True))
        sig.claim(f"the original fits at least {MEMORIZED:g} of the canaries", memorized >= MEMORIZED,
                  f"the original fits only {{0:.3f}} of the canaries (< {MEMORIZED:g})", memorized)
        sig.claim(f"gradient ascent's lowest membership AUC is at most the oracle's + {AUC_TOLERANCE:g}",
                  excess <= AUC_TOLERANCE,
                  f"gradient ascent's membership AUC stays {{0:.3f}} above the oracle's (> {AUC_TOLERANCE:g})",
                  excess)
        sig.claim(f"retain accuracy is at least {INTACT:g} when forget accuracy comes down to {HALF_FORGOTTEN:g}",
                  retain_at_half >= INTACT,
                  lambda s: (f"retain accuracy is {retain_at_half[s]:.3f} < {INTACT:g} when forget accuracy reaches "
                             f"{HALF_FORGOTTEN:g}") if np.isfinite(retain_at_half[s]) else
                            f"forget accuracy never came down to {HALF_FORGOTTEN:g}")
        sig.claim("retain accuracy ends at or below the collapse level", final_retain <= level,
                  "retain accuracy ends at {0:.3f}, above the collapse level {1:.3f}", final_retain, level)
        return sig.verdict()
