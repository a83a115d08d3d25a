"""Sustainability of unlearning (MUSE's fifth axis): a sequence of requests,
each unlearned from the model the previous one left.

Setting (catalog/unlearning.py, "canaries"), the canaries cut into
REQUESTS (3) requests (`forget-set`, `requests: 3`: splits `forget/r`, and
`keep/r`, the training set without requests 0..r): one original trained on
everything; a retrain oracle per request (`oracle-r`, trained on `keep/r`);
and for gradient ascent and NPO (β = 1) a chain of arms, request r
unlearned from the arm of request r - 1 (`npo-0` from the original,
`npo-1` from `npo-0`, ...), each full-batch SGD at lr 0.05 for
STEPS_PER_REQUEST (60) steps on `forget/r`, probed every 10.

Signature, per seed:
- NPO keeps every request forgotten: after request r, its accuracy on each
  of requests 0..r (agreement with the canaries' wrong labels, 0.93-1.00 on
  the original) <= FORGOTTEN, under half the original's (typically
  0.02-0.05);
- after the last request NPO keeps more utility than gradient ascent: its
  test accuracy exceeds gradient ascent's by >= UTILITY_GAIN;
- gradient ascent has collapsed already after the first request: test
  accuracy <= COLLAPSED (chance is 0.25), and stays so after the last
  (measured 0.25-0.46 full, 0.25-0.44 quick over 24 seeds).
The thresholds, with the ranges measured across seeds when they were set
(24 seeds at full and at quick size; the default seeds are among them),
are data on the phenomenon (`learnscope list unlearning-sustainability`).
Reported, not checked: NPO's utility does not always survive the sequence.
Its test accuracy after the last request is close to the oracle's that
never saw a request in most seeds (median gap -0.02 / -0.05) but falls far
below it in a few (worst -0.43 / -0.50: 0.49 and 0.40 test accuracy), the
degradation over sequential requests that MUSE reports for most methods.

Wall time (`learnscope verify`, default seeds, this 2-core machine, one
torch thread, process start included): full 10 s, --quick 4 s.
"""

from __future__ import annotations

import numpy as np

from learnscope import registry
from learnscope.catalog.base import Arm, Phenomenon
from learnscope.catalog.unlearning import (
    CANARY_METHODS,
    GA,
    NPO,
    ORACLE,
    ORIGINAL,
    canary_base,
    canary_size,
    method_arm,
    unlearn_recipe,
)
from learnscope.results import ArmData, Sweep, Threshold, Verdict

REQUESTS = 3
STEPS_PER_REQUEST = 60
SEEDS_MEASURED = {"full": 24, "quick": 24}
FORGOTTEN = Threshold(0.45, "FORGOTTEN", "most accuracy of NPO on any request it has unlearned, after each request",
                      "NPO's highest accuracy on an unlearned request", full=(0.0, 0.28), quick=(0.0, 0.38),
                      seeds=SEEDS_MEASURED)
UTILITY_GAIN = Threshold(0.1, "UTILITY_GAIN", "least test accuracy of NPO above gradient ascent's after the last "
                         "request", None, full=(0.24, 0.71), quick=(0.15, 0.70), seeds=SEEDS_MEASURED)
# the range is after the first request (after the last: in the module's docstring)
COLLAPSED = Threshold(0.6, "COLLAPSED", "most test accuracy of gradient ascent after the first request and after "
                      "the last (collapsed)", "GA test accuracy after the first request", full=(0.25, 0.56),
                      quick=(0.25, 0.49), seeds=SEEDS_MEASURED)


def after(method: str, request: int) -> str:
    """The arm that has unlearned requests 0..request with `method`."""
    return f"{method}-{request}"


@registry.phenomena.register("unlearning-sustainability")
class UnlearningSustainability(Phenomenon):
    summary = ("three forget requests in sequence: NPO keeps each forgotten and more utility than gradient ascent, "
               "which collapses at the first")
    source = "MUSE: Machine Unlearning Six-Way Evaluation for Language Models"
    headline = "accuracy/test"
    comparison = {**{f"accuracy/forget/{r}": f"request {r} accuracy" for r in range(REQUESTS)},
                  "accuracy/retain": "retain accuracy", "accuracy/test": "test accuracy"}
    thresholds = (FORGOTTEN, UTILITY_GAIN, COLLAPSED)
    fixed = ("task.requests",)  # one oracle and one chain link per request

    def arms(self, quick: bool) -> list[Arm]:
        splits = [f"forget/{r}" for r in range(REQUESTS)] + ["retain", "test"]
        original = Arm(ORIGINAL, canary_base(canary_size(quick)).derive({
            "task.requests": REQUESTS,
            "probes": [{"name": "accuracy", "splits": splits}, {"name": "loss", "splits": splits}],
        }))
        arms = [original] + [original.derive(f"oracle-{r}", {"recipe.train_split": f"keep/{r}"})
                             for r in range(REQUESTS)]
        recipe = unlearn_recipe(STEPS_PER_REQUEST, probe_every=10)
        for method in (GA, NPO):
            for r in range(REQUESTS):
                source = ORIGINAL if r == 0 else after(method, r - 1)
                arms.append(method_arm(original, after(method, r), CANARY_METHODS[method], recipe, f"forget/{r}",
                                       starts_from=source))
        return arms

    def check(self, arms: dict[str, ArmData]) -> Verdict:
        last = REQUESTS - 1
        worst_kept = np.max([arms[after(NPO, r)].final(f"accuracy/forget/{q}")
                             for r in range(REQUESTS) for q in range(r + 1)], axis=0)
        npo_last = arms[after(NPO, last)].final("accuracy/test")
        ga_first = arms[after(GA, 0)].final("accuracy/test")
        ga_last = arms[after(GA, last)].final("accuracy/test")
        gap = npo_last - arms[f"oracle-{last}"].final("accuracy/test")
        sig = self.signature(arms[ORIGINAL].seeds)
        sig.measure("NPO's highest accuracy on an unlearned request", worst_kept)
        sig.measure("NPO test accuracy after the last request", npo_last)
        sig.measure("NPO - oracle test accuracy after the last request (reported)", gap)
        sig.measure("GA test accuracy after the first request", ga_first)
        sig.measure("GA test accuracy after the last request", ga_last)
        sig.claim(f"NPO's accuracy on every unlearned request stays at most {FORGOTTEN:g}", worst_kept <= FORGOTTEN,
                  f"NPO's accuracy on an unlearned request rose to {{0:.3f}} > {FORGOTTEN:g}", worst_kept)
        sig.claim(f"after {REQUESTS} requests NPO's test accuracy exceeds gradient ascent's by at least "
                  f"{UTILITY_GAIN:g}", npo_last - ga_last >= UTILITY_GAIN,
                  f"after {REQUESTS} requests NPO's test accuracy {{0:.3f}} exceeds gradient ascent's {{1:.3f}} by "
                  f"less than {UTILITY_GAIN:g}", npo_last, ga_last)
        sig.claim(f"gradient ascent's test accuracy is at most {COLLAPSED:g} after the first request",
                  ga_first <= COLLAPSED,
                  f"gradient ascent kept test accuracy {{0:.3f}} > {COLLAPSED:g} after the first request", ga_first)
        sig.claim(f"gradient ascent's test accuracy is at most {COLLAPSED:g} after the last request",
                  ga_last <= COLLAPSED,
                  f"gradient ascent kept test accuracy {{0:.3f}} > {COLLAPSED:g} after the last request", ga_last)
        return sig.verdict()

    def figures(self, arms: dict[str, ArmData]) -> list[Sweep]:
        def unlearned_so_far(arm: ArmData, r: int):
            """Accuracy on requests 0..r, the worst (highest) of them."""
            return np.max([arm.final(f"accuracy/forget/{q}") for q in range(r + 1)], axis=0)

        chains = {ORACLE: [arms[f"oracle-{r}"] for r in range(REQUESTS)],
                  GA: [arms[after(GA, r)] for r in range(REQUESTS)],
                  NPO: [arms[after(NPO, r)] for r in range(REQUESTS)]}
        original = arms[ORIGINAL]
        panels = {
            "test accuracy": {label: [original.final("accuracy/test")] + [a.final("accuracy/test") for a in chain]
                              for label, chain in chains.items()},
            "accuracy on the requests so far (highest)": {
                label: [None] + [unlearned_so_far(a, r) for r, a in enumerate(chain)]
                for label, chain in chains.items()},
        }
        ticks = ["none"] + [str(r + 1) for r in range(REQUESTS)]
        return [Sweep("unlearning-sustainability: accuracy after each sequential request",
                      "final accuracy after each request", "requests unlearned (oracle: retrained without them)",
                      ticks, panels)]
