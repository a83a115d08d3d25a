"""Unlearning privacy: a membership-inference attack sees the forget set in
the original model and not in the retrain oracle — the reference of MUSE's
privacy leakage, (AUC_unlearned − AUC_retrained) / AUC_retrained.

Setting (catalog/unlearning.py, "canaries"): a 4-class Gaussian mixture in
which `count` training examples carry random wrong labels (the forget set);
the holdout is as many test examples given wrong labels of their own, drawn
the same way but never trained on. The original trains on everything and
fits every canary; the oracle trains on the retain set alone. The attack is
the loss threshold (`membership_auc`, forget against holdout): a canary the
model memorized has a low loss on its wrong label, a holdout example a high
one. For the oracle both are examples it never saw, drawn alike, so its AUC
is that of two exchangeable samples: 0.5 up to sampling noise (standard
deviation sqrt((m + n + 1) / (12 m n)): 0.051 at 64 + 64 examples, 0.036 at
128 + 128).

Signature, per seed (measured = ranges across seeds of `learnscope run
unlearning-privacy --seeds 24` ("full") and `--quick --seeds 24`
("quick"); the default seeds are among them):
- the original memorized the canaries: forget accuracy >= MEMORIZED (0.9)
  (measured 0.945-1.000 full, 0.984-1.000 quick; the oracle's 0.000-0.047
  and 0.000-0.078);
- the attack sees them: the original's membership AUC >= ORIGINAL_AUC (0.9)
  (measured 0.963-0.995 full, 0.959-0.995 quick);
- it does not on the oracle: |AUC - 0.5| <= ORACLE_BAND (0.15), about 3
  noise standard deviations at --quick, 4 at full (measured 0.420-0.566
  full, 0.412-0.575 quick: at most 0.088 from 0.5).
The original's privacy leakage against the oracle (derived, in the summary)
is what an unlearning method that did nothing would leak: measured +0.73 to
+1.30 per seed at full size (mean +1.00, 95% CI [0.96, 1.05]), +0.71 to
+1.41 quick; catalog/ga_collapse.py and npo_vs_ga.py give the methods'.

Wall time (`learnscope verify`, this 2-core machine, one torch thread, the
process's start included): full 6 s, --quick 3 s.
"""

from __future__ import annotations

from learnscope import registry
from learnscope.catalog.base import ArmData, Verdict
from learnscope.catalog.unlearning import (
    AUC,
    CANARY_COMPARISON,
    ORACLE,
    ORIGINAL,
    UnlearningPhenomenon,
    canary_arms,
    canary_size,
    first_failure,
    privacy_leakages,
)
from learnscope.spec import Experiment

MEMORIZED = 0.9
ORIGINAL_AUC = 0.9
ORACLE_BAND = 0.15


@registry.phenomena.register("unlearning-privacy")
class UnlearningPrivacy(UnlearningPhenomenon):
    summary = ("canaries: the loss-threshold attack tells the forget set from held-out data in the original "
               "(AUC ~1), not in the retrain oracle (AUC ~0.5)")
    source = "MUSE: Machine Unlearning Six-Way Evaluation for Language Models"
    headline = AUC
    comparison = CANARY_COMPARISON

    def arms(self, quick: bool) -> dict[str, Experiment]:
        return canary_arms(canary_size(quick))

    def check(self, arms: dict[str, ArmData]) -> Verdict:
        original, oracle = arms[ORIGINAL], arms[ORACLE]
        memorized = original.final("accuracy/forget")
        auc_original, auc_oracle = original.final(AUC), oracle.final(AUC)
        failures = [
            first_failure(
                (m >= MEMORIZED, f"the original fits only {m:.3f} of the canaries (< {MEMORIZED:g})"),
                (a >= ORIGINAL_AUC, f"the original's membership AUC is {a:.3f} < {ORIGINAL_AUC:g}"),
                (abs(b - 0.5) <= ORACLE_BAND,
                 f"the oracle's membership AUC is {b:.3f}, more than {ORACLE_BAND:g} from 0.5"),
            )
            for m, a, b in zip(memorized, auc_original, auc_oracle)
        ]
        return self.verdict(original.seeds, failures, {
            "original forget accuracy": memorized.tolist(),
            "oracle forget accuracy": oracle.final("accuracy/forget").tolist(),
            "original membership AUC": auc_original.tolist(),
            "oracle membership AUC": auc_oracle.tolist(),
            "original privacy leakage": privacy_leakages(arms)[ORIGINAL].tolist(),
        })
