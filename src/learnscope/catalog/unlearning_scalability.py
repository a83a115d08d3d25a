"""Scalability of unlearning (MUSE's fourth axis): how methods fare as the
forget set grows.

Setting (catalog/unlearning.py, "canaries"), at three forget-set sizes:
`count` canaries of the mixture's training examples, each size with its
own original (trained on all, its canaries included), its own retrain
oracle, and gradient ascent and NPO (β = 1) from that original, with the
same optimizer and budget (full-batch SGD, lr 0.05, 300 steps, probed
every 20). Sizes (SHARES; arms `original-small`, `npo-large`, ...):
3.1%, 12.5% and 37.5% of the training set, 32, 128 and 384 canaries of
1024 training examples at full size, 16, 64 and 192 of 512 at --quick.

As the forget set grows the original generalizes worse (test accuracy
0.85-0.94 with 32 canaries, 0.56-0.68 with 384, full size): more of what it
learned must go. Signature, per seed and at EVERY size:
- NPO forgets: its final forget accuracy (agreement with the canaries'
  wrong labels, 1 on the original) <= FORGOTTEN;
- NPO keeps more utility than gradient ascent: its final test accuracy
  exceeds gradient ascent's by >= UTILITY_GAIN;
- gradient ascent collapses: its final test accuracy <= COLLAPSED (chance
  is 0.25).
The thresholds, with the ranges measured across seeds and sizes when they
were set (24 seeds at full and at quick size; the default seeds are among
them), are data on the phenomenon (`learnscope list
unlearning-scalability`).
Reported, not checked: NPO's test accuracy against the retrain oracle of
each size — close in most seeds (median gap -0.01 to -0.02 at every size,
both sizes) but down to -0.22 in a few (NPO 0.66-0.97, oracles 0.84-0.97):
NPO recovers most of what the canaries cost the original, not always all.

Wall time (`learnscope verify`, default seeds, this 2-core machine, one
torch thread, process start included): full 15 s, --quick 5 s.
"""

from __future__ import annotations

from dataclasses import replace

from learnscope import registry
from learnscope.catalog.base import Arm, Phenomenon
from learnscope.catalog.unlearning import GA, NPO, ORACLE, ORIGINAL, canary_arms, canary_size
from learnscope.results import ArmData, Sweep, Threshold, Verdict

# forget-set sizes, as shares of the training set (the same at both sizes)
SHARES = {"small": 1 / 32, "medium": 1 / 8, "large": 3 / 8}
# measured at every size: one range across the sizes' measures (`... @3.1%`, `@12.5%`, `@37.5%`)
SEEDS_MEASURED = {"full": 24, "quick": 24}
FORGOTTEN = Threshold(0.15, "FORGOTTEN", "most final forget accuracy of NPO, at every forget-set size", None,
                      full=(0.0, 0.09), quick=(0.0, 0.12), seeds=SEEDS_MEASURED)
UTILITY_GAIN = Threshold(0.2, "UTILITY_GAIN", "least final test accuracy of NPO above gradient ascent's, at every "
                         "forget-set size", None, full=(0.32, 0.72), quick=(0.41, 0.70), seeds=SEEDS_MEASURED)
COLLAPSED = Threshold(0.55, "COLLAPSED", "most final test accuracy of gradient ascent (collapsed), at every "
                      "forget-set size", None, full=(0.25, 0.47), quick=(0.25, 0.48), seeds=SEEDS_MEASURED)


def sized(arm: str, size: str) -> str:
    """The arm at one forget-set size, e.g. `npo-large`."""
    return f"{arm}-{size}"


@registry.phenomena.register("unlearning-scalability")
class UnlearningScalability(Phenomenon):
    summary = ("canaries at three forget-set sizes: at each, NPO forgets and keeps more utility than gradient "
               "ascent, which collapses")
    source = "MUSE: Machine Unlearning Six-Way Evaluation for Language Models"
    headline = "accuracy/test"
    comparison = {"accuracy/forget": "forget accuracy", "accuracy/retain": "retain accuracy",
                  "accuracy/test": "test accuracy"}
    thresholds = (FORGOTTEN, UTILITY_GAIN, COLLAPSED)

    def arms(self, quick: bool) -> list[Arm]:
        arms = []
        for label, share in SHARES.items():
            size = replace(canary_size(quick), count=round(share * canary_size(quick).samples))
            for arm in canary_arms(size, [GA, NPO], probe_every=20, log_points=0):
                arms.append(Arm(sized(arm.name, label), arm.experiment,
                                None if arm.starts_from is None else sized(arm.starts_from, label)))
        return arms

    def check(self, arms: dict[str, ArmData]) -> Verdict:
        final = {name: arm.final for name, arm in arms.items()}
        sig = self.signature(next(iter(arms.values())).seeds)
        for label, share in SHARES.items():
            at = f"{share:.1%} of the training set"
            npo_forget = final[sized(NPO, label)]("accuracy/forget")
            npo_test, ga_test = final[sized(NPO, label)]("accuracy/test"), final[sized(GA, label)]("accuracy/test")
            sig.measure(f"NPO forget accuracy @{share:.1%}", npo_forget)
            sig.measure(f"NPO - GA test accuracy @{share:.1%}", npo_test - ga_test)
            sig.measure(f"GA test accuracy @{share:.1%}", ga_test)
            sig.measure(f"NPO - oracle test accuracy @{share:.1%} (reported)",
                        npo_test - final[sized(ORACLE, label)]("accuracy/test"))
            sig.claim(f"canaries {at}: NPO's forget accuracy is at most {FORGOTTEN:g}", npo_forget <= FORGOTTEN,
                      f"canaries {at}: NPO's forget accuracy {{0:.3f}} > {FORGOTTEN:g}", npo_forget)
            sig.claim(f"canaries {at}: NPO's test accuracy exceeds gradient ascent's by at least {UTILITY_GAIN:g}",
                      npo_test - ga_test >= UTILITY_GAIN,
                      f"canaries {at}: NPO's test accuracy {{0:.3f}} exceeds gradient ascent's {{1:.3f}} by less "
                      f"than {UTILITY_GAIN:g}", npo_test, ga_test)
            sig.claim(f"canaries {at}: gradient ascent's test accuracy is at most {COLLAPSED:g}",
                      ga_test <= COLLAPSED,
                      f"canaries {at}: gradient ascent kept test accuracy {{0:.3f}} > {COLLAPSED:g}", ga_test)
        return sig.verdict()

    def figures(self, arms: dict[str, ArmData]) -> list[Sweep]:
        panels = {label: {arm: [arms[sized(arm, size)].final(metric) for size in SHARES]
                          for arm in (ORIGINAL, ORACLE, GA, NPO)}
                  for metric, label in (("accuracy/test", "test accuracy"),
                                        ("accuracy/forget", "forget accuracy (the canaries' wrong labels)"))}
        ticks = [f"{share:.1%}" for share in SHARES.values()]
        return [Sweep("unlearning-scalability: final accuracy against the size of the forget set",
                      "final accuracy at each forget-set size", "forget set, share of the training set", ticks,
                      panels)]
