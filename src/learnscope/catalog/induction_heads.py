"""Induction heads form abruptly, at the step the in-context loss drops.

Singh et al., "What needs to go right for an induction head?": induction
heads (a head that attends to the token after an earlier copy of the
current one, and copies it) emerge at the same time as a phase change in
the loss, and several form, additively (after Olsson et al., "In-context
Learning and Induction Heads"); Reddy,
"The mechanistic basis of data dependence and abrupt learning in an
in-context classification task", finds the same in a two-layer
attention-only network, where the abrupt rise of in-context accuracy is the
formation of an induction head. The setting is `bursty-icl.py`'s (vector
items, B = 2, K = 2048 classes on 32 labels), with two heads per layer, so
the best head is found among four.

The induction score is TransformerLens's detector on the query row: the
share of the query's attention on the labels that follow the items of its
class (`induction_score`, `queries: matched`, `rows: [-1]`, the item's class
as its identity), per head; `/max` is the best head at each probe and
`/uniform` what even attention over the causal positions scores (2/17 at
N = 8, B_eval = 2). The in-context loss is the cross-entropy on the
`in_context` split (novel classes: only the context tells the label).

Signature, per seed:
- the score jumps at the loss drop: the first probe at which the best
  head's score reaches SCORE_JUMP (0.5: half a perfect head) is within
  TOLERANCE steps (two probes) of the first at which the in-context loss is
  at most half of ln(N / B_eval) (half the loss of guessing among the
  context's labels, the plateau's level);
- the head forms: the best head's final score is at least FORMED;
- clamping is causal for formation (Singh et al.'s optogenetic clamp): in
  the arm `clamped`, layer 0's heads write their batch mean throughout
  training (`ablate`, `head_out.0`, `mode: mean`), and the best head's
  score never reaches SCORE_JUMP nor in-context accuracy CLAMPED_MAX (0.4,
  the floor B/N + 0.15): without the previous-token information no
  induction head forms (measured: peak score 0.21-0.23, peak in-context
  accuracy 0.26-0.32, at both sizes);
- before the jump the score is near even attention's: its median over the
  probes before the rise (from step 25 to TOLERANCE before the jump) is at
  most NEAR_UNIFORM above `/uniform`. It is not at it: on the plateau the
  query already reads labels rather than items, evenly (even attention on
  the context's 8 labels would score 2/8), which gives the plateau's
  accuracy B/N; the induction head is what picks the matching one.

Measured (probes every 25 steps; ranges also on the thresholds,
`learnscope list induction-heads`): the score jumps at steps 525-675
(quick, 4 seeds, 800 steps) and 525-775 (full, 8 seeds, 1200 steps), at
the loss drop or one probe (25 steps) before it, never after; the best
head ends at 0.87-0.90 (quick) and 0.92-0.95 (full); before the jump its
median is 0.07-0.09 above even attention's 0.12.
Both layer-1 heads become induction heads, as Singh et al. find several:
mean-ablating either alone (probe `head_ablation`, measured in a separate
run) leaves in-context accuracy at 0.69-0.85, unlike the one-head model of
`bursty-icl`, where ablating it leaves at most the floor.
"""

from __future__ import annotations

import math

import numpy as np

from learnscope import registry
from learnscope.catalog.base import Arm, Figure, Phenomenon
from learnscope.catalog.bursty_icl import INDUCTION, floor, icl_experiment
from learnscope.results import ArmData, Bands, Threshold, Verdict, first_step
from learnscope.spec import Experiment

SCORE_JUMP = 0.5
SEEDS_MEASURED = {"full": 8, "quick": 4}
TOLERANCE = Threshold(50.0, "TOLERANCE", "most steps between the score's jump and the in-context loss drop",
                      "|jump - drop|", full=(0.0, 25.0), quick=(0.0, 25.0), seeds=SEEDS_MEASURED)
FORMED = Threshold(0.8, "FORMED", "least final induction score of the best head", "final score",
                   full=(0.924, 0.953), quick=(0.868, 0.901), seeds=SEEDS_MEASURED)
CLAMPED_MAX = Threshold(0.4, "CLAMPED_MAX", "most in-context accuracy at any probe with layer 0 clamped (the floor "
                        "B/N = 0.25 plus 0.15: above the sampling noise of 256 probed examples, sd 0.027)",
                        "clamped peak in-context", full=(0.266, 0.324), quick=(0.262, 0.309), seeds=SEEDS_MEASURED)
NEAR_UNIFORM = Threshold(0.15, "NEAR_UNIFORM", "most the pre-jump median score exceeds even attention's",
                         "pre-jump excess", full=(0.074, 0.091), quick=(0.082, 0.091), seeds=SEEDS_MEASURED)

# Singh et al.'s optogenetic clamp: layer 0's heads write their batch mean throughout
# training, so no head of layer 1 can read which item precedes a label
CLAMP = {"name": "ablate", "site": "head_out.0", "mode": "mean"}


def induction_experiment(quick: bool) -> Experiment:
    return icl_experiment(quick, burstiness=2, heads=2, circuit=[INDUCTION])


@registry.phenomena.register("induction-heads")
class InductionHeads(Phenomenon):
    summary = "the best head's induction score jumps from near even attention at the step the in-context loss drops"
    source = ("What needs to go right for an induction head? A mechanistic study of in-context learning circuits "
              "and their formation")
    headline = "induction_score/max"
    thresholds = (TOLERANCE, FORMED, NEAR_UNIFORM, CLAMPED_MAX)

    def arms(self, quick: bool) -> list[Arm]:
        bursty = Arm("bursty", induction_experiment(quick))
        return [bursty, bursty.derive("clamped", {"interventions": [CLAMP]})]

    def check(self, arms: dict[str, ArmData]) -> Verdict:
        arm = arms["bursty"]
        plateau_loss = math.log(1 / floor(arm))  # the loss of guessing among the context's labels
        steps, score = arm.curve("induction_score/max")
        _, uniform = arm.curve("induction_score/uniform")
        _, loss = arm.curve("loss/in_context")
        jump = first_step(steps, score, SCORE_JUMP)
        drop = first_step(steps, loss, plateau_loss / 2, below=True)
        gap = np.abs(jump - drop)
        before = np.full(len(jump), np.nan)
        for s, t in enumerate(jump):
            window = (steps > 0) & (steps <= t - TOLERANCE)
            if np.isfinite(t) and window.any():
                before[s] = np.median(score[s, window]) - uniform[s, 0]
        final = score[:, -1]
        clamped_score = np.nanmax(arms["clamped"].curve("induction_score/max")[1], axis=1)
        clamped_icl = np.nanmax(arms["clamped"].curve("accuracy/in_context")[1], axis=1)

        sig = self.signature(arm.seeds)
        sig.measure("score jump", jump)
        sig.measure("loss drop", drop)
        sig.measure("|jump - drop|", gap)
        sig.measure("final score", final)
        sig.measure("pre-jump excess", before)
        sig.claim(f"the best head's score reaches {SCORE_JUMP} within {TOLERANCE:g} steps of the in-context loss "
                  f"falling to half of ln(N/B) = {plateau_loss / 2:.3f}", np.nan_to_num(gap, nan=np.inf) <= TOLERANCE,
                  lambda s: f"score jump at {jump[s]:.0f}, loss drop at {drop[s]:.0f}")
        sig.claim(f"the best head's final score >= {FORMED:g}", final >= FORMED,
                  lambda s: f"final score {final[s]:.2f}")
        sig.claim(f"before the jump the median score is at most {NEAR_UNIFORM:g} above even attention's",
                  np.nan_to_num(before, nan=np.inf) <= NEAR_UNIFORM,
                  lambda s: f"pre-jump median {before[s]:.2f} above even attention")
        sig.measure("clamped peak score", clamped_score)
        sig.measure("clamped peak in-context", clamped_icl)
        sig.claim(f"with layer 0 clamped, the score never reaches {SCORE_JUMP} nor in-context accuracy "
                  f"{CLAMPED_MAX:g}", (clamped_score < SCORE_JUMP) & (clamped_icl <= CLAMPED_MAX),
                  lambda s: f"clamped: peak score {clamped_score[s]:.2f}, peak in-context {clamped_icl[s]:.2f}")
        return sig.verdict()

    def figures(self, arms: dict[str, ArmData]) -> list[Figure]:
        arm = arms["bursty"]
        steps, score = arm.curve("induction_score/max")
        _, loss = arm.curve("loss/in_context")
        _, uniform = arm.curve("induction_score/uniform")
        _, accuracy = arm.curve("accuracy/in_context")
        scale = math.log(1 / floor(arm))
        return [Bands(
            "The best head's induction score and the in-context loss (divided by ln(N/B), the loss of guessing "
            "among the context's labels) change at the same probed step; even attention scores the flat line.",
            "induction score and in-context loss", "step", "value",
            [("induction score, best head", steps, score), ("in-context loss / ln(N/B)", steps, loss / scale),
             ("in-context accuracy", steps, accuracy), ("induction score of even attention", steps, uniform)],
            ylim=(0.0, 1.2))]
