"""Curated self-consumption: a generative model refit, generation after
generation, on its own samples that a reward-driven choice kept, climbs
the reward and collapses onto the reward's modes; a share of real data in
every generation's training set keeps it spread out ("Self-Consuming
Generative Models with Curated Data Provably Optimize Human Preferences",
Ferbach et al. 2024).

Setting: the source's discrete core. The generative model is a categorical
distribution over M items (`categorical`: every input the same constant,
the model's softmax output on it the distribution, cross-entropy training
maximum likelihood), a linear model with bias (`mlp` with `hidden: []`)
fit by full-batch Adam to its N training labels (it reaches their
empirical frequencies). The ground truth is uniform over the items; the
reward is r(i) = β · i / (M − 1), β = 5: the last item is the one users
prefer. Arms, in order:
- `gen0`: fit to N real draws;
- `curated-g` (g = 1..G): fit to labels curated from `curated-(g−1)`'s
  model (`gen0` for g = 1): per example K = 4 candidates from the model,
  one kept with probability ∝ exp(r) (`curate`, real_fraction 0);
- `mixed-g`: the same from `mixed-(g−1)`, but half of the training split
  keeps its real labels (real_fraction λ = 0.5).
Both chains share each generation's draws (common random numbers). G = 5
at both sizes; quick: M = 16, N = 300, 300 updates; full: M = 32,
N = 1000, 400 updates. The `distribution` probe reads each final model's
entropy H (nats) and expected reward E_p[r].

The source's results, as claims per seed:
- the expected reward rises over the curated generations: the last is
  at least GAIN above gen0's, and it rises at every generation (RISES);
- the curated chain's entropy collapses: its last generation's entropy
  is at most COLLAPSE times gen0's;
- the mixed chain stays stable: its last generation's entropy is at least
  FLOOR times the real distribution's (log M for the uniform truth), and
  its expected reward still rises above gen0's (by at least MIXED_GAIN).

Measured (16 seeds, full / quick): gen0's expected reward 2.42-2.63 /
2.32-2.65 (β/2 = 2.5 under the truth), the last curated generation's
4.69-4.82 / 4.74-4.86 (β = 5 is the collapse onto the preferred item),
the last mixed one's 3.36-3.49 / 3.28-3.51; the curated entropy falls
from 3.44-3.45 / 2.73-2.76 nats (log M = 3.466 / 2.773) to 1.43-1.83 /
0.83-1.14, the mixed one ends at 3.11-3.22 / 2.44-2.56. In a numpy
simulation of the same process with the fits taken as the empirical
frequencies (400 seeds per size), no seed's curated reward fell at any
generation, the curated entropy ratio stayed under 0.54, the mixed
entropy's 1st percentile was 0.84 / 0.89 of log M (quick / full), and
the smallest gains were 2.05 and 0.74.

The thresholds, with the ranges measured across seeds when they were set
(`learnscope run curated-self-consumption --seeds 16` and `--quick
--seeds 16`), are data on the phenomenon (`learnscope list
curated-self-consumption`).
"""

from __future__ import annotations

import numpy as np

from learnscope import registry
from learnscope.catalog.base import Arm, Figure, Phenomenon
from learnscope.catalog.model_collapse import GEN0, generation_curves  # gen0, then chains of generations
from learnscope.results import ArmData, Bands, Threshold, Verdict
from learnscope.spec import Experiment

SEEDS_MEASURED = {"full": 16, "quick": 16}
GAIN = Threshold(1.5, "GAIN", "least rise of the expected reward from gen0 to the last curated generation",
                 "curated reward gain", full=(2.093, 2.396), quick=(2.103, 2.541), seeds=SEEDS_MEASURED)
RISES = Threshold(5, "RISES", "least number of the G = 5 curated generations whose expected reward exceeds the one "
                  "before (5: every one)", "curated rising generations", full=(5, 5), quick=(5, 5), seeds=SEEDS_MEASURED)
COLLAPSE = Threshold(0.65, "COLLAPSE", "largest ratio of the last curated generation's entropy to gen0's",
                     "curated entropy ratio", full=(0.4145, 0.5312), quick=(0.3005, 0.4151), seeds=SEEDS_MEASURED)
FLOOR = Threshold(0.8, "FLOOR", "least ratio of the last mixed generation's entropy to the real distribution's",
                  "mixed entropy over the truth's", full=(0.8987, 0.9301), quick=(0.8788, 0.9220), seeds=SEEDS_MEASURED)
MIXED_GAIN = Threshold(0.5, "MIXED_GAIN", "least rise of the expected reward from gen0 to the last mixed generation",
                       "mixed reward gain", full=(0.848, 1.006), quick=(0.796, 1.015), seeds=SEEDS_MEASURED)
ENTROPY, REWARD = "distribution/entropy", "distribution/reward"
ROUNDS = 5  # generations after gen0, at both sizes (the catalog's sizes share their arms)
SIZES = {True: {"items": 16, "samples": 300, "steps": 300}, False: {"items": 32, "samples": 1000, "steps": 400}}
CANDIDATES, BETA, MIXED = 4, 5.0, 0.5
SEEDS = 16


def experiment(quick: bool, interventions: list[dict] | None = None) -> Experiment:
    size = SIZES[quick]
    return Experiment.model_validate({
        "task": {"name": "categorical", "items": size["items"], "samples": size["samples"], "test_samples": 1000,
                 "reward": BETA},
        "model": {"name": "mlp", "hidden": []},
        "recipe": {"optimizer": "adam", "lr": 0.1, "batch_size": None, "steps": size["steps"],
                   "probe_every": size["steps"], "probe_log_points": 0},
        "interventions": interventions or [],
        "probes": ["distribution"],
        "seeds": SEEDS,
    })


def curated(g: int) -> str:
    return f"curated-{g}"


def mixed(g: int) -> str:
    return f"mixed-{g}"


def chain_arms(quick: bool) -> list[Arm]:
    arms = [Arm(GEN0, experiment(quick))]
    for name, fraction in ((curated, 0.0), (mixed, MIXED)):
        for g in range(1, ROUNDS + 1):
            previous = GEN0 if g == 1 else name(g - 1)
            step = {"name": "curate", "source": f"@{previous}", "candidates": CANDIDATES, "real_fraction": fraction,
                    "generation": g}
            arms.append(Arm(name(g), experiment(quick, [step])))
    return arms


@registry.phenomena.register("curated-self-consumption")
class CuratedSelfConsumption(Phenomenon):
    summary = ("a categorical model refit on its own reward-curated samples climbs the reward and collapses onto its "
               "modes; half real data per generation keeps its entropy up")
    source = "Self-Consuming Generative Models with Curated Data Provably Optimize Human Preferences"
    headline = REWARD
    required_share = 0.9
    thresholds = (GAIN, RISES, COLLAPSE, FLOOR, MIXED_GAIN)
    fixed = ("task", "model", "interventions")
    comparison = {REWARD: "expected reward", ENTROPY: "entropy"}

    def arms(self, quick: bool) -> list[Arm]:
        return chain_arms(quick)

    def check(self, arms: dict[str, ArmData]) -> Verdict:
        sig = self.signature(arms[GEN0].seeds)
        reward, reward_mixed = generation_curves(arms, REWARD, curated, mixed)
        entropy, entropy_mixed = generation_curves(arms, ENTROPY, curated, mixed)
        truth_entropy = float(-(arms[GEN0].experiment.task.truth().log()  # type: ignore[attr-defined]
                                * arms[GEN0].experiment.task.truth()).sum())  # type: ignore[attr-defined]
        sig.measure("gen0 expected reward", reward[:, 0])
        sig.measure("curated last expected reward", reward[:, -1])
        sig.measure("mixed last expected reward", reward_mixed[:, -1])
        gain = sig.measure("curated reward gain", reward[:, -1] - reward[:, 0])
        rises = sig.measure("curated rising generations", (np.diff(reward, axis=1) > 0).sum(1).astype(float))
        mixed_gain = sig.measure("mixed reward gain", reward_mixed[:, -1] - reward_mixed[:, 0])
        sig.measure("gen0 entropy", entropy[:, 0])
        sig.measure("curated last entropy", entropy[:, -1])
        sig.measure("mixed last entropy", entropy_mixed[:, -1])
        ratio = sig.measure("curated entropy ratio", entropy[:, -1] / entropy[:, 0])
        floor = sig.measure("mixed entropy over the truth's", entropy_mixed[:, -1] / truth_entropy)
        rounds = reward.shape[1] - 1
        sig.claim(f"the curated chain's expected reward rises by at least {GAIN:g} from gen0 to generation {rounds}",
                  gain >= GAIN, "it rises by {0:.3f}", gain)
        sig.claim(f"it rises in at least {RISES:g} of the {rounds} curated generations", rises >= RISES,
                  "it rises in {0:.0f}", rises)
        sig.claim(f"the curated chain's entropy collapses to at most {COLLAPSE:g} of gen0's",
                  ratio <= COLLAPSE, "it is {0:.3f} of gen0's", ratio)
        sig.claim(f"the mixed chain's entropy stays at least {FLOOR:g} of the real distribution's "
                  f"({truth_entropy:.3f} nats)", floor >= FLOOR, "it is {0:.3f} of it", floor)
        sig.claim(f"the mixed chain's expected reward still rises by at least {MIXED_GAIN:g}", mixed_gain >= MIXED_GAIN,
                  "it rises by {0:.3f}", mixed_gain)
        return sig.verdict()

    def figures(self, arms: dict[str, ArmData]) -> list[Figure]:
        x = np.arange(ROUNDS + 1, dtype=float)
        figures: list[Figure] = []
        for metric, what in ((REWARD, "expected reward"), (ENTROPY, "entropy (nats)")):
            if not all(name in arms for name in [GEN0, curated(ROUNDS), mixed(ROUNDS)]):
                return []
            lines = [(label, x, values) for label, values in zip(("curated (real fraction 0)",
                                                                  f"mixed (real fraction {MIXED:g})"),
                                                                 generation_curves(arms, metric, curated, mixed))]
            figures.append(Bands(f"curated-self-consumption: {what} over generations",
                                 f"{what} of each generation's model (line: mean of seeds; band: lowest to highest)",
                                 "generation (0: fit to real data)", what, lines))
        return figures

