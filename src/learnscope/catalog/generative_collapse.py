"""Model collapse in a generative model: a categorical distribution refit
by maximum likelihood on its own samples loses the items its samples miss
when the samples replace the real data, and stays near the truth when they
accumulate beside it ("Is Model Collapse Inevitable? Breaking the Curse of
Recursion by Accumulating Real and Synthetic Data", Gerstgrasser et al.
2024, the catalog's source; `model-collapse` is its linear-regression
half).

Setting: `categorical` with a Zipf ground truth p*(i) ∝ (i + 1)^(−1) over
M items and N training draws; the model a softmax over the items on the
constant input (`mlp` with `hidden: []`), trained by full-batch Adam to the
empirical frequencies (maximum likelihood). Each generation's samples are
plain draws from the previous model (`curate` with `candidates: 1`: no
curation). Arms, in order:
- `gen0`: fit to the N real draws;
- `replace-g` (g = 1..G): fit to N samples of `replace-(g−1)`'s model
  (`gen0` for g = 1) alone;
- `accumulate-g`: fit to the N real draws plus N samples of each earlier
  generation (`gen0`, `accumulate-1`, ..., `accumulate-(g−1)`), (g + 1) · N
  examples (`categorical`'s `copies: g + 1`, `curate`'s mode accumulate).
Generation g's uniforms are shared by both chains (common random numbers),
and accumulate's block j is exactly the sample generation j drew. G = 5 at
both sizes; quick: M = 16, N = 100, 300 updates; full: M = 32, N = 300,
400 updates; 16 seeds at each size.

Under replace the chain is a neutral (Wright–Fisher) drift: an item whose
count reaches 0 is practically lost (the fit drives its probability to
about 5e-6 at quick, so a later sample of N almost never brings it back),
so KL(p* ‖ model) grows with the generations; a lost item's share of it,
p*(i) · log(p*(i) / p(i)), is finite and set by how far the updates drive
its logit. Under accumulate the real draws stay in every fit and each
later sample is a shrinking share of the pool, so the fit wanders little
from gen0's and loses no item gen0 kept. At quick (16 seeds), the items
under probability 1e-3 number 0-2 of 16 in gen0, 4-9 in `replace-5`, and
no more than gen0's in `accumulate-5`.

Signature (per seed):
- replace's last-generation KL(p* ‖ model) is at least RATIO times
  accumulate's;
- accumulate's last-generation KL is at most BOUND nats, and at most
  GROWTH times gen0's (it stays near the fit to the real data alone; the
  linear-regression half's analogue is the π²/6 bound).
Also measured (not claimed): replace's growth over gen0, each chain's
last entropy over gen0's.

Measured (16 seeds, full / quick): gen0's KL 0.032-0.346 / 0.042-0.383
nats; replace's last 0.431-1.435 / 0.948-2.200 (3.83-30.7 / 2.47-29.0
times gen0's); accumulate's last 0.042-0.367 / 0.052-0.397 (1.06-1.96 /
0.70-2.24 times gen0's); their ratio 3.42-20.8 / 2.39-23.4; the last
entropy over gen0's 0.81-1.03 / 0.74-1.05 (replace), 0.96-1.02 /
0.95-1.04 (accumulate). With 64 seeds, 1 quick seed of 64 had a ratio
under 2 (1.80: its gen0 had already lost items, which accumulate keeps
lost) and none at full; accumulate's last KL stayed under 0.57 / 0.37 and
its growth under 2.59 / 2.40.

The thresholds, with the ranges measured across seeds when they were set
(`learnscope run generative-collapse --seeds 16` and `--quick --seeds
16`), are data on the phenomenon (`learnscope list generative-collapse`).
"""

from __future__ import annotations

import numpy as np

from learnscope import registry
from learnscope.catalog.base import Arm, Figure, Phenomenon
from learnscope.catalog.model_collapse import GEN0, accumulate, generation_curves, replace  # the same chain's arm names
from learnscope.results import ArmData, Bands, Threshold, Verdict
from learnscope.spec import Experiment

SEEDS_MEASURED = {"full": 16, "quick": 16}
RATIO = Threshold(2.0, "RATIO", "least ratio of replace's last-generation KL to the truth to accumulate's",
                  "replace over accumulate", full=(3.419, 20.76), quick=(2.385, 23.42), seeds=SEEDS_MEASURED)
BOUND = Threshold(0.75, "BOUND", "largest KL to the truth of accumulate's last generation, in nats",
                  "accumulate last KL", full=(0.04195, 0.3669), quick=(0.05191, 0.3973), seeds=SEEDS_MEASURED)
GROWTH = Threshold(3.0, "GROWTH", "largest ratio of accumulate's last-generation KL to the truth to gen0's",
                   "accumulate growth", full=(1.060, 1.958), quick=(0.7005, 2.243), seeds=SEEDS_MEASURED)
KL, ENTROPY = "distribution/kl_to_truth", "distribution/entropy"
ROUNDS = 5  # generations after gen0, at both sizes (the catalog's sizes share their arms)
SIZES = {True: {"items": 16, "samples": 100, "steps": 300}, False: {"items": 32, "samples": 300, "steps": 400}}
ZIPF = 1.0
SEEDS = 16


def experiment(quick: bool, copies: int = 1, interventions: list[dict] | None = None) -> Experiment:
    size = SIZES[quick]
    return Experiment.model_validate({
        "task": {"name": "categorical", "items": size["items"], "zipf": ZIPF, "samples": size["samples"],
                 "test_samples": 1000, "copies": copies},
        "model": {"name": "mlp", "hidden": []},
        "recipe": {"optimizer": "adam", "lr": 0.1, "batch_size": None, "steps": size["steps"],
                   "probe_every": size["steps"], "probe_log_points": 0},
        "interventions": interventions or [],
        "probes": ["distribution"],
        "seeds": SEEDS,
    })


def collapse_arms(quick: bool) -> list[Arm]:
    arms = [Arm(GEN0, experiment(quick))]
    for g in range(1, ROUNDS + 1):
        previous = GEN0 if g == 1 else replace(g - 1)
        step = {"name": "curate", "source": f"@{previous}", "candidates": 1, "generation": g}
        arms.append(Arm(replace(g), experiment(quick, 1, [step])))
    for g in range(1, ROUNDS + 1):
        chain = [f"@{GEN0}"] + [f"@{accumulate(j)}" for j in range(1, g)]
        step = {"name": "curate", "source": chain[-1], "earlier": chain[:-1], "mode": "accumulate",
                "candidates": 1, "generation": g}
        arms.append(Arm(accumulate(g), experiment(quick, g + 1, [step])))
    return arms


@registry.phenomena.register("generative-collapse")
class GenerativeCollapse(Phenomenon):
    summary = ("a categorical model refit on its own samples loses items and drifts from the truth when they replace "
               "the real data, stays near it when they accumulate beside it")
    source = "Is Model Collapse Inevitable? Breaking the Curse of Recursion by Accumulating Real and Synthetic Data"
    headline = KL
    required_share = 0.9
    thresholds = (RATIO, BOUND, GROWTH)
    fixed = ("task", "model", "interventions")
    comparison = {KL: "KL to the truth", ENTROPY: "entropy"}

    def arms(self, quick: bool) -> list[Arm]:
        return collapse_arms(quick)

    def check(self, arms: dict[str, ArmData]) -> Verdict:
        sig = self.signature(arms[GEN0].seeds)
        kl, kl_acc = generation_curves(arms, KL, replace, accumulate)
        entropy, entropy_acc = generation_curves(arms, ENTROPY, replace, accumulate)
        sig.measure("gen0 KL", kl[:, 0])
        sig.measure("replace last KL", kl[:, -1])
        last = sig.measure("accumulate last KL", kl_acc[:, -1])
        ratio = sig.measure("replace over accumulate", kl[:, -1] / kl_acc[:, -1])
        sig.measure("replace growth", kl[:, -1] / kl[:, 0])
        growth = sig.measure("accumulate growth", kl_acc[:, -1] / kl_acc[:, 0])
        sig.measure("replace entropy ratio", entropy[:, -1] / entropy[:, 0])
        sig.measure("accumulate entropy ratio", entropy_acc[:, -1] / entropy_acc[:, 0])
        rounds = kl.shape[1] - 1
        sig.claim(f"replace's KL to the truth at generation {rounds} is at least {RATIO:g} times accumulate's",
                  ratio >= RATIO, "the ratio is {0:.2f}", ratio)
        sig.claim(f"accumulate's KL to the truth at generation {rounds} is at most {BOUND:g} nats", last <= BOUND,
                  "it is {0:.3f}", last)
        sig.claim(f"and at most {GROWTH:g} times gen0's (the fit to the real data alone)", growth <= GROWTH,
                  "it is {0:.2f} times", growth)
        return sig.verdict()

    def figures(self, arms: dict[str, ArmData]) -> list[Figure]:
        if not all(name in arms for name in [GEN0, replace(ROUNDS), accumulate(ROUNDS)]):
            return []
        x = np.arange(ROUNDS + 1, dtype=float)
        figures: list[Figure] = []
        for metric, what in ((KL, "KL to the truth (nats)"), (ENTROPY, "entropy (nats)")):
            curves = generation_curves(arms, metric, replace, accumulate)
            lines = [(label, x, values) for label, values in zip(("replace", "accumulate"), curves)]
            figures.append(Bands(f"generative-collapse: {what} over generations",
                                 f"{what} of each generation's model (line: mean of seeds; band: lowest to highest)",
                                 "generation (0: fit to real data)", what, lines))
        return figures
