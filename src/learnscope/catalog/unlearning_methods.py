"""Unlearning methods compared on a tiny language model: MUSE's evaluation
("MUSE: Machine Unlearning Six-Way Evaluation for Language Models") of six
methods, with the retrain oracle as the reference and 8 seeds with CIs.

Setting. The `facts` corpus (tasks/facts.py): entities with one value per
attribute, each fact rendered by several templates, one template per fact
held out; retain entities and forget entities are trained on, holdout
entities never are. A transformer is trained on it until it has memorized
every string (the corpus docstring's recipe: AdamW lr 3e-3, batch 128, 300
steps; full size 64 retain / 16 forget / 16 holdout entities, 3
attributes, 4 templates, 16 values: 576 retain and 144 forget strings; a
2-layer transformer, d_model 64, 4 heads, d_mlp 256). Arms, same seeds:
- `original` (on `train`) and `oracle` (on `retain` only, same budget);
- one arm per method (interventions/unlearn.py), from the original's last
  checkpoint, on the forget strings: `finetune` (on retain batches only),
  `gradient-ascent`, `gradient-difference` (retain weight 1), `ga-kl` (KL
  to the original on retain, weight 1), `npo` (β 0.1, the paper's value for
  a sequence's summed log-likelihood; no retain term), `relabel` (random
  wrong tokens at the scored positions, no retain term). Adam, lr 2e-4
  (1e-3 at --quick), batches of 32 forget strings (16 at --quick) and as
  many retain strings for the methods with a retain term, probed at
  PROBES_PER_METHOD (4) even points of their budget and at the start (the
  original and the oracle at their start and end only); retain verbatim
  memorization is read on 192 of the 576 retain strings (96 at --quick),
  the other measures on whole splits.

MUSE's axes, read at each arm's end (`learnscope show`, the report, and
the table of the README), each with its 95% CI across seeds:
- verbatim memorization: `exact_match/forget` (greedy continuation of a
  trained forget string reproduced exactly);
- knowledge memorization: `exact_match/forget_knowledge` (a forget fact
  under its held-out template, never trained on verbatim);
- utility: `exact_match/retain_knowledge` (the same on retain entities),
  with `exact_match/retain` (verbatim) beside it;
- privacy leakage: MUSE's (AUC_oracle − AUC) / (1 − AUC_oracle) of the
  loss membership attack (MUSE's `PPL` key, not its default Min-40%),
  forget against holdout strings (derived; negative: under-unlearned);
- cost: updates and wall time over the oracle's (derived).
Scalability and sustainability are not part of this entry (see the README).

Step budgets. Each method unlearns until its forget verbatim memorization
comes down to the oracle's (within 0.05 of the oracle's mean, read every 10
steps of a measured run, 8 seeds full, 4 quick), or for at most a cap:
full — gradient-ascent 40, npo 40, relabel 30, gradient-difference 140,
ga-kl 200 (cap), finetune 200 (cap); quick — 30, 30, 20, 30, 40, 100
(cap). So the table compares methods at (about) the oracle's forget
verbatim memorization, and reads what each pays for it.

Under Adam NPO behaves like gradient ascent (Adam divides out the common
scale by which NPO shrinks its gradient, and with β 0.1 the per-string
weights stay nearly equal): NPO's advantage over gradient ascent is shown
under SGD in catalog/npo_vs_ga.py. MUSE's methods are run with Adam, as
here.

Signature, per seed:
- the original memorized the forget strings: verbatim >= MEMORIZED;
- the oracle keeps utility: its retain knowledge >= ORACLE_UTILITY, while
  its forget verbatim memorization is that of never-seen strings
  (0.035-0.104 against the holdout's 0.007-0.097 full; 0.000-0.167 and
  0.000-0.188 quick);
- every method that trains on the forget set lowers forget verbatim
  memorization to at most FORGOTTEN, half the original's (the highest
  measured is relabel's at both sizes);
- fine-tuning on retain alone does not unlearn in its budget: its forget
  verbatim memorization stays >= KEPT;
- a retain term preserves utility: gradient difference ends with retain
  knowledge at least RETAIN_TERM_GAIN above gradient ascent's.
The thresholds, with the ranges measured across seeds when they were set
(`learnscope run unlearning-methods --seeds 16` and `--quick --seeds 8`;
the default seeds are among them), are data on the phenomenon
(`learnscope list unlearning-methods`).
The values of the 8 default seeds at full size, per method, are the
README's table ("Unlearning methods on a tiny language model").

Wall time (`learnscope run unlearning-methods`, this 2-core machine, one
torch thread, report included): full 150 s (original and oracle 33 s each,
the methods 3-28 s each), --quick 11 s.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from learnscope import registry
from learnscope.catalog.base import Arm
from learnscope.catalog.unlearning import (
    AUC,
    ORACLE,
    ORIGINAL,
    UnlearningPhenomenon,
    unlearning_arms,
)
from learnscope.results import ArmData, Threshold, Verdict
from learnscope.spec import Experiment

METHODS = {
    "finetune": {"name": "finetune"},
    "gradient-ascent": {"name": "gradient-ascent"},
    "gradient-difference": {"name": "gradient-difference", "retain_weight": 1.0},
    "ga-kl": {"name": "ga-kl", "kl_weight": 1.0},
    "npo": {"name": "npo", "beta": 0.1},
    "relabel": {"name": "relabel"},
}
FORGET_SET_METHODS = [m for m in METHODS if m != "finetune"]
SEEDS_MEASURED = {"full": 16, "quick": 8}
MEMORIZED = Threshold(0.95, "MEMORIZED", "the original's least forget verbatim memorization: it memorized the "
                      "forget strings", "original forget verbatim", full=(1.0, 1.0), quick=(1.0, 1.0),
                      seeds=SEEDS_MEASURED)
ORACLE_UTILITY = Threshold(0.9, "ORACLE_UTILITY", "the oracle's least retain knowledge (utility)", "oracle utility",
                           full=(0.964, 1.0), quick=(0.938, 1.0), seeds=SEEDS_MEASURED)
# measured: the highest final forget verbatim memorization of any forget-set method (relabel's at both
# sizes; full, the others at most 0.236 gradient ascent, 0.208 gradient difference, 0.181 ga-kl, 0.188 npo)
FORGOTTEN = Threshold(0.5, "FORGOTTEN", "most final forget verbatim memorization of every method that trains on "
                      "the forget set", None, full=(0.0, 0.326), quick=(0.0, 0.354), seeds=SEEDS_MEASURED)
KEPT = Threshold(0.9, "KEPT", "least forget verbatim memorization after fine-tuning on retain alone",
                 "finetune forget verbatim", full=(1.0, 1.0), quick=(1.0, 1.0), seeds=SEEDS_MEASURED)
RETAIN_TERM_GAIN = Threshold(0.3, "RETAIN_TERM_GAIN", "least final retain knowledge of gradient difference above "
                             "gradient ascent's", "utility: gradient-difference - gradient-ascent",
                             full=(0.432, 0.943), quick=(0.375, 0.562), seeds=SEEDS_MEASURED)

# A probe reads ~1100 strings at full size (a step 64): the original and the
# oracle are probed at their start and end only, each method at PROBES_PER_METHOD
# points of its budget, and verbatim retain memorization on `retain_probed`
# strings, so that probing stays within 10% of the training time.
PROBES_PER_METHOD = 4

VERBATIM, KNOWLEDGE = "exact_match/forget", "exact_match/forget_knowledge"
UTILITY, RETAIN_VERBATIM = "exact_match/retain_knowledge", "exact_match/retain"


@dataclass(frozen=True)
class FactsSize:
    corpus: dict
    model: dict
    seeds: int
    original_steps: int
    original_batch: int
    lr: float
    batch: int
    retain_probed: int  # retain strings read by the verbatim probe (the first of a shuffled split)
    budgets: dict = field(default_factory=dict)


FULL = FactsSize(
    corpus={"retain_entities": 64, "forget_entities": 16, "holdout_entities": 16, "attributes": 3},
    model={"layers": 2, "d_model": 64, "heads": 4, "d_mlp": 256},
    seeds=8, original_steps=300, original_batch=128, lr=2e-4, batch=32, retain_probed=192,
    budgets={"finetune": 200, "gradient-ascent": 40, "gradient-difference": 140, "ga-kl": 200, "npo": 40,
             "relabel": 30},
)
QUICK = FactsSize(
    corpus={"retain_entities": 32, "forget_entities": 8, "holdout_entities": 8, "attributes": 2},
    model={"layers": 1, "d_model": 32, "heads": 4, "d_mlp": 128},
    seeds=4, original_steps=200, original_batch=64, lr=1e-3, batch=16, retain_probed=96,
    budgets={"finetune": 100, "gradient-ascent": 30, "gradient-difference": 30, "ga-kl": 40, "npo": 30,
             "relabel": 20},
)


def facts_base(size: FactsSize) -> Experiment:
    return Experiment.model_validate({
        "task": {"name": "facts", **size.corpus},
        "model": {"name": "transformer", **size.model},
        "recipe": {"optimizer": "adamw", "lr": 3e-3, "steps": size.original_steps, "batch_size": size.original_batch,
                   "probe_every": None, "probe_log_points": 0},
        "probes": [{"name": "exact_match", "splits": ["forget", "forget_knowledge", "retain_knowledge", "holdout"]},
                   {"name": "exact_match", "splits": ["retain"], "max_examples": size.retain_probed},
                   {"name": "loss", "splits": ["forget", "holdout"]},
                   {"name": "loss", "splits": ["retain"], "max_examples": size.retain_probed}, "membership_auc"],
        "seeds": size.seeds,
    })


def facts_arms(size: FactsSize) -> list[Arm]:
    def recipe(method: str) -> dict:
        return {"optimizer": "adam", "lr": size.lr, "steps": size.budgets[method], "batch_size": size.batch,
                "probe_every": max(size.budgets[method] // PROBES_PER_METHOD, 1), "probe_log_points": 0}

    return unlearning_arms(facts_base(size), {m: (spec, recipe(m)) for m, spec in METHODS.items()})


@registry.phenomena.register("unlearning-methods")
class UnlearningMethods(UnlearningPhenomenon):
    summary = ("tiny LM on a facts corpus: six unlearning methods against the retrain oracle on MUSE's axes "
               "(verbatim and knowledge memorization, privacy leakage, utility, cost), 8 seeds with CIs")
    source = ("MUSE: Machine Unlearning Six-Way Evaluation for Language Models; Negative Preference Optimization: "
              "From Catastrophic Collapse to Effective Unlearning")
    headline = VERBATIM
    tradeoffs = ((VERBATIM, UTILITY), (KNOWLEDGE, UTILITY), (AUC, UTILITY))
    thresholds = (MEMORIZED, ORACLE_UTILITY, FORGOTTEN, KEPT, RETAIN_TERM_GAIN)
    comparison: ClassVar[dict[str, str]] = {
        VERBATIM: "forget verbatim", KNOWLEDGE: "forget knowledge", RETAIN_VERBATIM: "retain verbatim",
        UTILITY: "utility (retain knowledge)", AUC: "membership AUC", "privacy_leakage": "privacy leakage",
        "cost/updates": "updates / oracle's", "cost/wall_time": "wall time / oracle's",
    }

    def arms(self, quick: bool) -> list[Arm]:
        return facts_arms(QUICK if quick else FULL)

    def check(self, arms: dict[str, ArmData]) -> Verdict:
        original, oracle = arms[ORIGINAL], arms[ORACLE]
        memorized = original.final(VERBATIM)
        oracle_utility, oracle_verbatim = oracle.final(UTILITY), oracle.final(VERBATIM)
        forgotten = {m: arms[m].final(VERBATIM) for m in FORGET_SET_METHODS}
        kept = arms["finetune"].final(VERBATIM)
        gain = arms["gradient-difference"].final(UTILITY) - arms["gradient-ascent"].final(UTILITY)
        worst = [max(FORGET_SET_METHODS, key=lambda m: forgotten[m][s]) for s in range(len(memorized))]
        worst_forgotten = np.array([forgotten[m][s] for s, m in enumerate(worst)], dtype=float)
        sig = self.signature(original.seeds)
        sig.measure("original forget verbatim", memorized)
        sig.measure("oracle forget verbatim", oracle_verbatim)
        sig.measure("oracle holdout verbatim", oracle.final("exact_match/holdout"))
        sig.measure("oracle utility", oracle_utility)
        for m, values in forgotten.items():
            sig.measure(f"{m} forget verbatim", values)
        sig.measure("finetune forget verbatim", kept)
        sig.measure("utility: gradient-difference - gradient-ascent", gain)
        sig.claim(f"the original reproduces at least {MEMORIZED:g} of the forget strings", memorized >= MEMORIZED,
                  "the original reproduces only {0:.3f} of the forget strings", memorized)
        sig.claim(f"the oracle's retain knowledge is at least {ORACLE_UTILITY:g}", oracle_utility >= ORACLE_UTILITY,
                  f"the oracle's retain knowledge is {{0:.3f}} < {ORACLE_UTILITY:g}", oracle_utility)
        sig.claim(f"every method that trains on the forget set ends with forget verbatim memorization at most "
                  f"{FORGOTTEN:g}", worst_forgotten <= FORGOTTEN,
                  lambda s: f"{worst[s]} ends with forget verbatim memorization {worst_forgotten[s]:.3f} > "
                            f"{FORGOTTEN:g}")
        sig.claim(f"fine-tuning on retain keeps forget verbatim memorization at least {KEPT:g}", kept >= KEPT,
                  "fine-tuning on retain brought forget verbatim memorization to {0:.3f}", kept)
        sig.claim(f"gradient difference keeps at least {RETAIN_TERM_GAIN:g} more retain knowledge than gradient "
                  f"ascent", gain >= RETAIN_TERM_GAIN,
                  f"gradient difference keeps only {{0:.3f}} more retain knowledge than gradient ascent "
                  f"(< {RETAIN_TERM_GAIN:g})", gain)
        return sig.verdict()
