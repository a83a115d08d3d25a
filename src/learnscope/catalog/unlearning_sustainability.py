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

Signature, per seed (measured = ranges over 24 seeds at full / quick
size; the default seeds are among them):
- NPO keeps every request forgotten: after request r, its accuracy on each
  of requests 0..r (agreement with the canaries' wrong labels, 0.93-1.00 on
  the original) <= FORGOTTEN (0.45, under half the original's) (measured
  at most 0.28 / 0.38; typically 0.02-0.05);
- after the last request NPO keeps more utility than gradient ascent: its
  test accuracy exceeds gradient ascent's by >= UTILITY_GAIN (0.1)
  (measured 0.24-0.71 / 0.15-0.70);
- gradient ascent has collapsed already after the first request: test
  accuracy <= COLLAPSED (0.6) (measured 0.25-0.56 / 0.25-0.49; chance is
  0.25), and stays so after the last (measured 0.25-0.46 / 0.25-0.44).
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
from learnscope.catalog.base import ArmData, Phenomenon, Verdict
from learnscope.catalog.unlearning import (
    CANARY_METHODS,
    GA,
    NPO,
    ORACLE,
    ORIGINAL,
    canary_base,
    canary_size,
    first_failure,
    method_arm,
    sweep_figure,
    unlearn_recipe,
)
from learnscope.spec import Experiment

REQUESTS = 3
STEPS_PER_REQUEST = 60
FORGOTTEN = 0.45
UTILITY_GAIN = 0.1
COLLAPSED = 0.6


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

    def arms(self, quick: bool) -> dict[str, Experiment]:
        base = canary_base(canary_size(quick))
        base["task"] = {**base["task"], "requests": REQUESTS}
        splits = [f"forget/{r}" for r in range(REQUESTS)] + ["retain", "test"]
        base["probes"] = [{"name": "accuracy", "splits": splits}, {"name": "loss", "splits": splits}]
        arms = {ORIGINAL: Experiment.model_validate(base)}
        for r in range(REQUESTS):
            retrained = {**base["recipe"], "train_split": f"keep/{r}"}
            arms[f"oracle-{r}"] = Experiment.model_validate({**base, "recipe": retrained})
        recipe = unlearn_recipe(STEPS_PER_REQUEST, probe_every=10)
        for method in (GA, NPO):
            for r in range(REQUESTS):
                source = ORIGINAL if r == 0 else after(method, r - 1)
                arms[after(method, r)] = method_arm(base, CANARY_METHODS[method], recipe, f"forget/{r}", source)
        return arms

    def check(self, arms: dict[str, ArmData]) -> Verdict:
        last = REQUESTS - 1
        worst_kept = np.max([arms[after(NPO, r)].final(f"accuracy/forget/{q}")
                             for r in range(REQUESTS) for q in range(r + 1)], axis=0)
        npo_last = arms[after(NPO, last)].final("accuracy/test")
        ga_first = arms[after(GA, 0)].final("accuracy/test")
        ga_last = arms[after(GA, last)].final("accuracy/test")
        gap = npo_last - arms[f"oracle-{last}"].final("accuracy/test")
        failures = [first_failure(
            (k <= FORGOTTEN, f"NPO's accuracy on an unlearned request rose to {k:.3f} > {FORGOTTEN:g}"),
            (n - b >= UTILITY_GAIN, f"after {REQUESTS} requests NPO's test accuracy {n:.3f} exceeds gradient "
                                    f"ascent's {b:.3f} by less than {UTILITY_GAIN:g}"),
            (a <= COLLAPSED, f"gradient ascent kept test accuracy {a:.3f} > {COLLAPSED:g} after the first request"),
            (b <= COLLAPSED, f"gradient ascent kept test accuracy {b:.3f} > {COLLAPSED:g} after the last request"),
        ) for k, n, a, b in zip(worst_kept, npo_last, ga_first, ga_last)]
        return self.verdict(arms[ORIGINAL].seeds, failures, {
            "NPO's highest accuracy on an unlearned request": worst_kept.tolist(),
            "NPO test accuracy after the last request": npo_last.tolist(),
            "NPO - oracle test accuracy after the last request (reported)": gap.tolist(),
            "GA test accuracy after the first request": ga_first.tolist(),
            "GA test accuracy after the last request": ga_last.tolist(),
        })

    def figures(self, arms: dict[str, ArmData]) -> list:
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
        fig = sweep_figure(panels, ticks, "requests unlearned (oracle: retrained without them)",
                           "final accuracy after each request")
        return [("unlearning-sustainability: accuracy after each sequential request", fig)]
