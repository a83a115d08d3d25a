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
learned must go. Signature, per seed and at EVERY size (measured = ranges
over 24 seeds at full / quick size; the default seeds are among them):
- NPO forgets: its final forget accuracy (agreement with the canaries'
  wrong labels, 1 on the original) <= FORGOTTEN (0.15) (measured at most
  0.09 / 0.12);
- NPO keeps more utility than gradient ascent: its final test accuracy
  exceeds gradient ascent's by >= UTILITY_GAIN (0.2) (measured 0.32-0.72 /
  0.41-0.70);
- gradient ascent collapses: its final test accuracy <= COLLAPSED (0.55)
  (measured 0.25-0.47 / 0.25-0.48; chance is 0.25).
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
from learnscope.catalog.base import ArmData, Phenomenon, Verdict
from learnscope.catalog.unlearning import (
    GA,
    NPO,
    ORACLE,
    ORIGINAL,
    canary_arms,
    canary_size,
    first_failure,
    sweep_figure,
)
from learnscope.spec import Experiment

# forget-set sizes, as shares of the training set (the same at both sizes)
SHARES = {"small": 1 / 32, "medium": 1 / 8, "large": 3 / 8}
FORGOTTEN = 0.15
UTILITY_GAIN = 0.2
COLLAPSED = 0.55


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

    def arms(self, quick: bool) -> dict[str, Experiment]:
        arms = {}
        for label, share in SHARES.items():
            size = replace(canary_size(quick), count=round(share * canary_size(quick).samples))
            for name, experiment in canary_arms(size, [GA, NPO], probe_every=20, log_points=0).items():
                source = experiment.init_from
                arms[sized(name, label)] = experiment.model_copy(
                    update={"init_from": None if source is None else sized(source, label)})
        return arms

    def check(self, arms: dict[str, ArmData]) -> Verdict:
        final = {name: arm.final for name, arm in arms.items()}
        measures, failures = {}, None
        for label, share in SHARES.items():
            at = f"{share:.1%} of the training set"
            npo_forget = final[sized(NPO, label)]("accuracy/forget")
            npo_test, ga_test = final[sized(NPO, label)]("accuracy/test"), final[sized(GA, label)]("accuracy/test")
            measures[f"NPO forget accuracy @{share:.1%}"] = npo_forget.tolist()
            measures[f"NPO - GA test accuracy @{share:.1%}"] = (npo_test - ga_test).tolist()
            measures[f"GA test accuracy @{share:.1%}"] = ga_test.tolist()
            measures[f"NPO - oracle test accuracy @{share:.1%} (reported)"] = (
                npo_test - final[sized(ORACLE, label)]("accuracy/test")).tolist()
            here = [first_failure(
                (f <= FORGOTTEN, f"canaries {at}: NPO's forget accuracy {f:.3f} > {FORGOTTEN:g}"),
                (n - t >= UTILITY_GAIN, f"canaries {at}: NPO's test accuracy {n:.3f} exceeds gradient ascent's "
                                        f"{t:.3f} by less than {UTILITY_GAIN:g}"),
                (t <= COLLAPSED, f"canaries {at}: gradient ascent kept test accuracy {t:.3f} > {COLLAPSED:g}"),
            ) for f, n, t in zip(npo_forget, npo_test, ga_test)]
            failures = here if failures is None else [a or b for a, b in zip(failures, here)]
        seeds = next(iter(arms.values())).seeds
        return self.verdict(seeds, failures or [""] * len(seeds), measures)

    def figures(self, arms: dict[str, ArmData]) -> list:
        panels = {label: {arm: [arms[sized(arm, size)].final(metric) for size in SHARES]
                          for arm in (ORIGINAL, ORACLE, GA, NPO)}
                  for metric, label in (("accuracy/test", "test accuracy"),
                                        ("accuracy/forget", "forget accuracy (the canaries' wrong labels)"))}
        ticks = [f"{share:.1%}" for share in SHARES.values()]
        fig = sweep_figure(panels, ticks, "forget set, share of the training set",
                           "final accuracy at each forget-set size")
        return [("unlearning-scalability: final accuracy against the size of the forget set", fig)]
