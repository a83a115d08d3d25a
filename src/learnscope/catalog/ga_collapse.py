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

Signature, per seed (measured = ranges across seeds of `learnscope run
ga-collapse --seeds 24` ("full") and `--quick --seeds 24` ("quick"); the
default seeds are among them; measured with the 24 log-spaced probes of
CANARY_LOG_PROBES, the figures of probes at every step in brackets where
they differed):
- the original memorized the canaries: forget accuracy >= MEMORIZED (0.9)
  (measured 0.945-1.000 full, 0.984-1.000 quick);
- gradient ascent brings the attack down to the oracle's level: its lowest
  membership AUC along the steps is at most the oracle's + AUC_TOLERANCE
  (0.1; the difference of two independent AUCs at chance has a standard
  deviation of 0.07 at --quick, 0.05 at full) (measured: lowest AUC
  0.408-0.501 full, 0.342-0.490 quick, i.e. -0.147 to +0.042 and -0.212 to
  +0.020 from the oracle's, the oracle's level reached at probes 7-16 and
  8-19 [steps 6-14 and 8-17]);
- utility is intact while it forgets: when forget accuracy first comes down
  to HALF_FORGOTTEN (0.5, interpolated between probes), retain accuracy is
  >= INTACT (0.9) (measured 0.975-1.000 full, 0.926-1.000 quick
  [0.955-1.000]);
- and collapses as the steps grow: at the end (300 steps) retain accuracy
  is at most halfway from chance (0.25) to the original's (1.0), i.e. <=
  0.625 (measured 0.239-0.455 full, 0.232-0.458 quick; test accuracy
  0.250-0.463; the first probe at the collapse level: 7-68 full, 8-55
  quick [steps 7-62, 8-47]).
Its privacy leakage at the end (derived) is negative, over-unlearning:
mean -0.05 (95% CI [-0.09, -0.02]) full, -0.10 ([-0.15, -0.05]) quick.
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
from learnscope.catalog.base import ArmData, Verdict
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
    first_at_or_below,
    first_failure,
)
from learnscope.spec import Experiment

MEMORIZED = 0.9
AUC_TOLERANCE = 0.1
HALF_FORGOTTEN = 0.5
INTACT = 0.9
COLLAPSE_SHARE = 0.5  # collapsed: retain accuracy at most this share of the way from chance to the original's


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

    def arms(self, quick: bool) -> dict[str, Experiment]:
        return canary_arms(canary_size(quick), [GA])

    def check(self, arms: dict[str, ArmData]) -> Verdict:
        original, oracle, ga = arms[ORIGINAL], arms[ORACLE], arms[GA]
        memorized = original.final("accuracy/forget")
        steps, auc = ga.curve(AUC)
        _, forget = ga.curve("accuracy/forget")
        _, retain = ga.curve("accuracy/retain")
        lowest_auc = np.nanmin(auc, axis=1)
        excess = lowest_auc - oracle.final(AUC)
        reached = first_at_or_below(steps, auc, oracle.final(AUC) + AUC_TOLERANCE)
        _, retain_at_half = crossing(steps, forget, HALF_FORGOTTEN, retain)
        level = collapse_level(original.final("accuracy/retain"))
        final_retain = retain[:, -1]
        failures = [
            first_failure(
                (m >= MEMORIZED, f"the original fits only {m:.3f} of the canaries (< {MEMORIZED:g})"),
                (e <= AUC_TOLERANCE, (f"gradient ascent's membership AUC stays {e:.3f} above the oracle's "
                                      f"(> {AUC_TOLERANCE:g})")),
                (r >= INTACT, (f"retain accuracy is {r:.3f} < {INTACT:g} when forget accuracy reaches "
                               f"{HALF_FORGOTTEN:g}") if np.isfinite(r) else
                              f"forget accuracy never came down to {HALF_FORGOTTEN:g}"),
                (f <= c, f"retain accuracy ends at {f:.3f}, above the collapse level {c:.3f}"),
            )
            for m, e, r, f, c in zip(memorized, excess, retain_at_half, final_retain, level)
        ]
        return self.verdict(ga.seeds, failures, {
            "original forget accuracy": memorized.tolist(),
            "lowest membership AUC": lowest_auc.tolist(),
            "lowest AUC - oracle AUC": excess.tolist(),
            "step AUC reaches the oracle's": reached.tolist(),
            "lowest forget accuracy": np.nanmin(forget, axis=1).tolist(),
            "retain accuracy at half forgotten": retain_at_half.tolist(),
            "final retain accuracy": final_retain.tolist(),
            "final test accuracy": ga.final("accuracy/test").tolist(),
            "collapse level": level.tolist(),
            "collapse step": first_at_or_below(steps, retain, level).tolist(),
        })
