"""Unlearning privacy: a membership-inference attack sees the forget set in
the original model and not in the retrain oracle — the reference of MUSE's
privacy leakage, (AUC_retrained − AUC_unlearned) / (1 − AUC_retrained) in
learnscope's AUC orientation (probes/privacy.py derives it from MUSE's code).

Setting (catalog/unlearning.py, "canaries"): a 4-class Gaussian mixture in
which `count` training examples carry random wrong labels (the forget set);
the holdout is as many test examples given wrong labels of their own, drawn
the same way but never trained on. The original trains on everything and
fits every canary; the oracle trains on the retain set alone. The attack is
the loss threshold (`membership_auc`, forget against holdout; MUSE's `PPL`
key, open-unlearning's LOSS; with one label per example MUSE's default
Min-k% is the same attack): a canary the model memorized has a low loss on
its wrong label, a holdout example a high one. For the oracle both are examples it never saw, drawn alike, so its AUC
is that of two exchangeable samples: 0.5 up to sampling noise (standard
deviation sqrt((m + n + 1) / (12 m n)): 0.051 at 64 + 64 examples, 0.036 at
128 + 128).

Signature, per seed:
- the original memorized the canaries: forget accuracy >= MEMORIZED (the
  oracle's, never trained on them, 0.000-0.047 full, 0.000-0.078 quick
  over 24 seeds);
- the attack sees them: the original's membership AUC >= ORIGINAL_AUC;
- it does not on the oracle: |AUC - 0.5| <= ORACLE_BAND, about 3 noise
  standard deviations at --quick, 4 at full.
The thresholds, with the ranges measured across seeds when they were set
(`learnscope run unlearning-privacy --seeds 24` and `--quick --seeds 24`;
the default seeds are among them), are data on the phenomenon (`learnscope
list unlearning-privacy`).
The original's privacy leakage against the oracle (derived, in the summary
and the verdict's measures) is what an unlearning method that did nothing
would leak, under-unlearned and so negative, near MUSE's floor of −1 (an
original whose AUC is 1): measured −0.99 to −0.93 per seed at full size
(mean −0.953, 95% CI [−0.961, −0.946]), −0.99 to −0.93 quick (mean
−0.960, [−0.969, −0.950]), over the same 24 seeds (MUSE's scale is ×100:
−95). catalog/ga_collapse.py and npo_vs_ga.py give the methods'.

Wall time (`learnscope verify`, this 2-core machine, one torch thread, the
process's start included): full 6 s, --quick 3 s.
"""

from __future__ import annotations

import numpy as np

from learnscope import registry
from learnscope.catalog.base import Arm
from learnscope.catalog.unlearning import (
    AUC,
    CANARY_COMPARISON,
    ORACLE,
    ORIGINAL,
    UnlearningPhenomenon,
    canary_arms,
    canary_size,
    privacy_leakages,
)
from learnscope.results import ArmData, Threshold, Verdict

SEEDS_MEASURED = {"full": 24, "quick": 24}
MEMORIZED = Threshold(0.9, "MEMORIZED", "the original's least forget accuracy: it memorized the canaries",
                      "original forget accuracy", full=(0.945, 1.0), quick=(0.984, 1.0), seeds=SEEDS_MEASURED)
ORIGINAL_AUC = Threshold(0.9, "ORIGINAL_AUC", "the original's least membership AUC: the attack sees the canaries",
                         "original membership AUC", full=(0.963, 0.995), quick=(0.959, 0.995), seeds=SEEDS_MEASURED)
ORACLE_BAND = Threshold(0.15, "ORACLE_BAND", "the oracle's membership AUC stays within this of 0.5 (chance)",
                        "oracle membership AUC", full=(0.420, 0.566), quick=(0.412, 0.575), seeds=SEEDS_MEASURED)


@registry.phenomena.register("unlearning-privacy")
class UnlearningPrivacy(UnlearningPhenomenon):
    summary = ("canaries: the loss-threshold attack tells the forget set from held-out data in the original "
               "(AUC ~1), not in the retrain oracle (AUC ~0.5)")
    source = "MUSE: Machine Unlearning Six-Way Evaluation for Language Models"
    headline = AUC
    comparison = CANARY_COMPARISON
    thresholds = (MEMORIZED, ORIGINAL_AUC, ORACLE_BAND)

    def arms(self, quick: bool) -> list[Arm]:
        return canary_arms(canary_size(quick))

    def check(self, arms: dict[str, ArmData]) -> Verdict:
        original, oracle = arms[ORIGINAL], arms[ORACLE]
        sig = self.signature(original.seeds)
        memorized = sig.measure("original forget accuracy", original.final("accuracy/forget"))
        sig.measure("oracle forget accuracy", oracle.final("accuracy/forget"))
        auc_original = sig.measure("original membership AUC", original.final(AUC))
        auc_oracle = sig.measure("oracle membership AUC", oracle.final(AUC))
        sig.measure("original privacy leakage", privacy_leakages(arms)[ORIGINAL])
        sig.claim(f"the original fits at least {MEMORIZED:g} of the canaries", memorized >= MEMORIZED,
                  f"the original fits only {{0:.3f}} of the canaries (< {MEMORIZED:g})", memorized)
        sig.claim(f"the original's membership AUC is at least {ORIGINAL_AUC:g}", auc_original >= ORIGINAL_AUC,
                  f"the original's membership AUC is {{0:.3f}} < {ORIGINAL_AUC:g}", auc_original)
        sig.claim(f"the oracle's membership AUC is within {ORACLE_BAND:g} of 0.5",
                  np.abs(auc_oracle - 0.5) <= ORACLE_BAND,
                  f"the oracle's membership AUC is {{0:.3f}}, more than {ORACLE_BAND:g} from 0.5", auc_oracle)
        return sig.verdict()
