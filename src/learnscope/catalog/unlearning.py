"""What the machine-unlearning entries of the catalog share (family 5 of
../shared/catalog.md): how their arms are built, how their measures are
read from the store, what they derive across arms (privacy leakage and cost
against the retrain oracle) and their forget-quality-against-utility figure
(as data, `Tradeoff`, which the report draws).

Every unlearning entry has the arms of "MUSE: Machine Unlearning Six-Way
Evaluation for Language Models":
- `original`: trained on `train` (retain ∪ forget);
- `oracle`: the same experiment trained on `retain` alone
  (`recipe.train_split: retain`; same seeds, data, initial weights and
  step budget), the retrained model every method is measured against;
- one arm per unlearning method (learnscope.interventions.unlearn), started
  from the original's last checkpoint (`starts_from="original"`), trained
  on the forget set (`recipe.train_split: forget`) with its own optimizer
  and step budget, probed every few steps so that its path from the
  original towards (or past) the oracle can be read.

Two settings, each measured for the entries that use it:

*Canaries* (unlearning-privacy, ga-collapse, npo-vs-ga): `forget-set` of
kind `canaries` over a 4-class Gaussian mixture (16 dimensions, separation
3): `count` training examples carry random wrong labels, the holdout is as
many test examples with wrong labels of their own. An MLP with one hidden
ReLU layer; original and oracle trained full-batch by Adam (lr 3e-3, 200
steps): the original fits the canaries (forget accuracy 0.945-1.00 across
24 seeds), the oracle predicts their true class (forget accuracy
0.00-0.08); test accuracy 0.76-0.86 and 0.86-0.95 (quick, 16 seeds): the
canaries cost the original some generalization. At full size 300 original
steps fit every canary but left gradient ascent less room before utility
fell (retain accuracy 0.77-0.99 when half the canaries were forgotten,
against 0.975-1.00 at 200 steps), so both sizes keep 200. Unlearning:
full-batch SGD, lr 0.05, 300 steps, probed at 24 log-spaced steps (1, 2,
3, ..., 243, 300: CANARY_LOG_PROBES; a probe every step made an unlearning
arm 3.6x slower than its training). Two sizes: full
(1024 training examples, 128 canaries, 512 test, 256 hidden units, 8
seeds) and quick (512, 64, 256, 128 hidden units, 4 seeds). Choices forced
by measurement:
- SGD, not Adam, for the unlearning arms: Adam divides each update by a
  running gradient scale, which cancels the factor by which NPO shrinks its
  gradient as examples are unlearned; under Adam (lr 1e-3, 300 steps, quick
  size with an MLP [128, 128]) NPO's retain accuracy fell below 0.5 in 2 of
  8 seeds, as gradient ascent's did in all, and ended at 0.46-0.96 against
  gradient ascent's 0.23-0.46.
- One hidden layer: with two ([128, 128]) the gradient of each layer grows
  with the product of the others', gradient ascent's weights blow up in
  finite time and every seed's loss overflowed within 36-52 steps at lr
  0.05 (76-115 at lr 0.02), at most a few steps after retain accuracy
  collapsed, so no step budget held every seed's collapse with finite
  losses. With one hidden layer ascent grows the weights only
  exponentially, and losses overflow much later: at steps 419-567 (8 seeds
  at each size), long after every seed's collapse (by step 62), so the
  300-step budget holds the collapse with finite losses.
- NPO's β = 1: the paper's 0.1 scales a sequence's summed log-likelihood;
  for one label per example 1 puts the softplus knee where the
  per-example loss moves.

*Facts* (unlearning-methods): the `facts` corpus and a two-layer
transformer (catalog/unlearning_methods.py gives the sizes and budgets).

Measures derived across arms (`derived`, shown with CIs in `learnscope
show` and the report), seed by seed:
- `privacy_leakage` of every arm but the oracle: MUSE's PrivLeak (as its
  code computes it, without its ×100; probes/privacy.py derives it),
  (AUC_oracle − AUC) / (1 − AUC_oracle) of the final
  `membership_auc/forget` (the loss attack, MUSE's `PPL` key, forget
  against holdout), against the oracle's of the same seed. Near 0: the
  attack sees what it sees on a model that never trained on the forget
  set; negative: under-unlearned (about −1 for the original against an
  oracle at chance); positive: over-unlearned (the forget set now looks
  less like members than never-seen data does);
- `cost/updates`, `cost/wall_time` of every unlearning arm: its updates and
  its wall time (from its run's creation to its end, as the store records
  them; one value per arm, so the same for every seed) over the oracle's,
  i.e. the cost of unlearning relative to retraining.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from learnscope.catalog.base import Arm, Phenomenon
from learnscope.probes.privacy import privacy_leakage
from learnscope.results import ArmData, Tradeoff
from learnscope.spec import Experiment

ORIGINAL, ORACLE = "original", "oracle"
AUC = "membership_auc/forget"

# ---------------------------------------------------------------- arms


def original_and_oracle(base: Experiment) -> list[Arm]:
    """The original (the experiment `base`, trained on `train`) and the
    retrain oracle (the same on `retain`)."""
    original = Arm(ORIGINAL, base.derive({"recipe.train_split": "train"}))
    return [original, original.derive(ORACLE, {"recipe.train_split": "retain"})]


def method_arm(base: Arm, name: str, method: Mapping, recipe: Mapping, train_split: str = "forget",
               starts_from: str | None = None) -> Arm:
    """An unlearning arm `name`: `base`'s task, model, probes and seeds;
    `method` (an intervention spec) trained on `train_split` under `recipe`
    (which replaces `base`'s), starting from the last checkpoint of the arm
    `starts_from` (`base` itself when not given)."""
    return base.derive(name, {"recipe": {**dict(recipe), "train_split": train_split}, "interventions": [dict(method)]},
                       starts_from=base.name if starts_from is None else starts_from)


def unlearning_arms(base: Experiment, methods: Mapping[str, tuple[Mapping, Mapping]]) -> list[Arm]:
    """original, oracle, then one arm per method: {arm: (method, recipe)}."""
    arms = original_and_oracle(base)
    return arms + [method_arm(arms[0], name, method, recipe) for name, (method, recipe) in methods.items()]


def method_names(arms: Mapping[str, ArmData]) -> list[str]:
    """The arms that unlearn: those started from another arm."""
    return [name for name, arm in arms.items() if arm.experiment.init_from]


# ---------------------------------------------------------------- the canary setting


@dataclass(frozen=True)
class CanarySize:
    samples: int  # training examples of the base mixture (retain + canaries)
    test_samples: int
    count: int  # canaries: the forget set
    hidden: int  # width of the MLP's one hidden layer
    seeds: int
    original_steps: int = 200
    unlearn_steps: int = 300


CANARY_FULL = CanarySize(samples=1024, test_samples=512, count=128, hidden=256, seeds=8)
CANARY_QUICK = CanarySize(samples=512, test_samples=256, count=64, hidden=128, seeds=4)
CANARY_CLASSES = 4
CANARY_CHANCE = 1.0 / CANARY_CLASSES  # accuracy of a constant prediction
UNLEARN_LR = 0.05
# Unlearning arms probed at this many log-spaced steps (about 24 distinct of
# 300): dense while forget and retain accuracy move, within the 10% probe
# overhead (a probe reads 1664 examples, a step 128: every step cost 3.6x).
CANARY_LOG_PROBES = 28
NPO_BETA = 1.0
GA, NPO = "gradient-ascent", "npo"
CANARY_METHODS = {GA: {"name": "gradient-ascent"}, NPO: {"name": "npo", "beta": NPO_BETA}}
# the arms side by side in summaries and reports (Phenomenon.comparison)
CANARY_COMPARISON = {"accuracy/forget": "forget accuracy", "accuracy/retain": "retain accuracy",
                     "accuracy/test": "test accuracy", AUC: "membership AUC", "privacy_leakage": "privacy leakage",
                     "cost/updates": "updates / oracle's", "cost/wall_time": "wall time / oracle's"}


def canary_size(quick: bool) -> CanarySize:
    return CANARY_QUICK if quick else CANARY_FULL


def canary_base(size: CanarySize) -> Experiment:
    return Experiment.model_validate({
        "task": {"name": "forget-set", "kind": "canaries", "count": size.count,
                 "base": {"name": "gaussian-mixture", "classes": CANARY_CLASSES, "dim": 16,
                          "samples": size.samples, "test_samples": size.test_samples}},
        "model": {"name": "mlp", "hidden": [size.hidden]},
        "recipe": {"optimizer": "adam", "lr": 3e-3, "steps": size.original_steps, "probe_every": 100,
                   "probe_log_points": 0},
        "probes": [{"name": "accuracy", "splits": ["forget", "retain", "test"]},
                   {"name": "loss", "splits": ["forget", "retain", "test"]}, "membership_auc"],
        "seeds": size.seeds,
    })


def unlearn_recipe(steps: int, probe_every: int | None = None, log_points: int = 0) -> dict:
    """The canary setting's unlearning: full-batch SGD at UNLEARN_LR, probed
    every `probe_every` steps and at `log_points` log-spaced steps."""
    return {"optimizer": "sgd", "lr": UNLEARN_LR, "steps": steps, "probe_every": probe_every,
            "probe_log_points": log_points}


def canary_arms(size: CanarySize, methods: Sequence[str] = (), probe_every: int | None = None,
                log_points: int = CANARY_LOG_PROBES) -> list[Arm]:
    """original, oracle and the named methods of CANARY_METHODS (full-batch
    SGD at UNLEARN_LR for `size.unlearn_steps` steps, probed as
    `unlearn_recipe` says)."""
    recipe = unlearn_recipe(size.unlearn_steps, probe_every, log_points)
    return unlearning_arms(canary_base(size), {m: (CANARY_METHODS[m], recipe) for m in methods})


# ---------------------------------------------------------------- readers


def crossing(steps: np.ndarray, values: np.ndarray, level, other: np.ndarray | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
    """Per seed, where `values` [S, T] first come down to `level` (a number or
    one per seed): the step, interpolated linearly between the last probe
    above the level and the first at or below it, and `other` [S, T] (e.g.
    utility) interpolated at that same point; both nan where the values
    never come down to the level (and NaN values never do)."""
    steps = np.asarray(steps, dtype=float)
    values = np.asarray(values, dtype=float)
    other = values if other is None else np.asarray(other, dtype=float)
    levels = np.broadcast_to(np.asarray(level, dtype=float), values.shape[:1])
    at_step, at_other = np.full(len(values), np.nan), np.full(len(values), np.nan)
    for s, (row, level_s) in enumerate(zip(values, levels)):
        below = np.nonzero(row <= level_s)[0]
        if not len(below):
            continue
        i = below[0]
        if i == 0 or row[i] == level_s:
            at_step[s], at_other[s] = steps[i], other[s, i]
            continue
        share = (row[i - 1] - level_s) / (row[i - 1] - row[i])  # of the way from probe i - 1 to probe i
        at_step[s] = steps[i - 1] + share * (steps[i] - steps[i - 1])
        at_other[s] = other[s, i - 1] + share * (other[s, i] - other[s, i - 1])
    return at_step, at_other


def privacy_leakages(arms: Mapping[str, ArmData], metric: str = AUC) -> dict[str, np.ndarray]:
    """MUSE's privacy leakage of every arm but the oracle, per seed: its final
    membership AUC against the oracle's of the same seed."""
    if ORACLE not in arms:
        return {}
    reference = arms[ORACLE].final(metric)
    return {name: privacy_leakage(arm.final(metric), reference) for name, arm in arms.items()
            if name != ORACLE and metric in set(arm.frame["name"])}


def updates(arm: ArmData) -> int:
    return arm.experiment.recipe.steps


def wall_time(arm: ArmData) -> float:
    """Seconds from the arm's creation to its end (nan while it runs)."""
    finished = arm.record.finished
    return float("nan") if finished is None else finished - arm.record.created


def costs(arms: Mapping[str, ArmData]) -> dict[str, dict[str, np.ndarray]]:
    """Per unlearning arm, its updates and wall time over the oracle's
    (the same value for each of its seeds)."""
    if ORACLE not in arms:
        return {}
    oracle = arms[ORACLE]
    out = {}
    for name in method_names(arms):
        n = len(arms[name].seeds)
        out[name] = {"cost/updates": np.full(n, updates(arms[name]) / updates(oracle)),
                     "cost/wall_time": np.full(n, wall_time(arms[name]) / wall_time(oracle))}
    return out


def unlearning_measures(arms: Mapping[str, ArmData]) -> dict[str, dict[str, np.ndarray]]:
    """Privacy leakage and cost, per arm and seed ({arm: {name: [S]}})."""
    measures: dict[str, dict[str, np.ndarray]] = {}
    for name, values in privacy_leakages(arms).items():
        measures.setdefault(name, {})["privacy_leakage"] = values
    for name, found in costs(arms).items():
        measures.setdefault(name, {}).update(found)
    return measures


class UnlearningPhenomenon(Phenomenon):
    """An unlearning entry: derives privacy leakage and cost against the
    oracle, and draws forget quality against utility for each (x, y) pair
    of `tradeoffs`."""

    tradeoffs: ClassVar[tuple[tuple[str, str], ...]] = ()

    def derived(self, arms: dict[str, ArmData]) -> dict[str, dict[str, np.ndarray]]:
        return unlearning_measures(arms)

    def figures(self, arms: dict[str, ArmData]) -> list[Tradeoff]:
        methods = method_names(arms)
        if not methods:
            return []
        out = []
        for x, y in self.tradeoffs:
            caption = f"{self.registry_name}: {x} against {y} along the unlearning steps"
            title = (f"{x} vs {y} along the unlearning steps\nline: mean of seeds; band: lowest to highest seed; "
                     f"original, oracle: mean, bars min to max")
            out.append(Tradeoff(caption, title, x, y,
                                lines={name: (arms[name].curve(x)[1], arms[name].curve(y)[1]) for name in methods},
                                references={name: (arms[name].final(x), arms[name].final(y))
                                            for name in (ORIGINAL, ORACLE) if name in arms}))
        return out
