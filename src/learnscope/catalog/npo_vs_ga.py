"""NPO against gradient ascent: at matched forget quality, Negative
Preference Optimization keeps more of the model's utility, and its collapse,
if it comes at all, comes much later — the source's claim that "the
progression toward catastrophic collapse by minimizing the NPO loss is
exponentially slower than GA".

Setting (catalog/unlearning.py, "canaries"): original and retrain oracle on
a 4-class Gaussian mixture with memorized wrong-label canaries; gradient
ascent and NPO (β = 1) from the original, the same optimizer (full-batch
SGD, lr 0.05), budget (300 steps) and probes (24 log-spaced steps,
CANARY_LOG_PROBES). At the original NPO's gradient is exactly gradient ascent's; it then weighs each canary by
2σ(β(nll_ref − nll)), which falls as the canary is unlearned. Under Adam
that shrinking scale is divided out and NPO behaves like gradient ascent
(catalog/unlearning.py), hence SGD.

Matched forget quality. Forget quality is forget accuracy (agreement with
the canaries' wrong labels: 1 on the original). Gradient ascent only
reaches a limited depth before it collapses (its lowest forget accuracy,
measured 0.06-0.28), NPO goes deeper (0.00-0.11, the oracle's 0.00-0.08),
so per seed the comparison is made at the deepest forget accuracy both
reach in their budgets, L = max(lowest of GA, lowest of NPO): for each
method, retain accuracy where its forget accuracy first comes down to L,
interpolated linearly between the two probes around that point
(`crossing`; at the first probe it reaches L, before any later recovery).
L is gradient ascent's lowest in every seed measured, so this is
gradient ascent at the most it forgets, against NPO at the same depth.

Collapse: retain accuracy at most halfway from chance (0.25) to the
original's (ga-collapse's level); its step is the first probe at that level,
and a method that never reaches it within the budget is censored there.

Signature, per seed:
- at matched forget quality NPO's retain accuracy exceeds gradient
  ascent's by >= UTILITY_GAIN;
- gradient ascent collapses within the budget;
- NPO does not collapse before COLLAPSE_DELAY times gradient ascent's
  collapse step (a method that never collapses is censored at its budget).
The thresholds, with the ranges measured across seeds when they were set
(`learnscope run npo-vs-ga --seeds 24` and `--quick --seeds 24`, the
default seeds among them, probed at 24 log-spaced steps), are data on the
phenomenon (`learnscope list npo-vs-ga`). Beside them (24 seeds, full /
quick; with a probe at every step in brackets where it differed): the gain
comes from NPO's 0.948-0.997 / 0.839-1.000 retain accuracy at the match
against gradient ascent's 0.240-0.858 / 0.241-0.866, at forget accuracies
L 0.062-0.273 / 0.062-0.281, gradient ascent's lowest in every seed (NPO's
lowest 0.000-0.055 / 0.000-0.109); gains with a probe at every step were
0.191-0.746 / 0.181-0.746. Gradient ascent collapses at probed steps 7-68 /
8-55 [7-62, 8-47]; no NPO seed collapsed within the 300 steps, its retain
accuracy at the end 0.929-0.989 / 0.817-0.993.
Beyond: over 3000 steps (8 seeds) NPO never collapsed (retain accuracy at
the end 0.95-0.98 full, 0.92-0.98 quick) and its loss stayed finite, while
gradient ascent's overflowed at steps 419-567 (catalog/ga_collapse.py).
Privacy (derived, MUSE's sign, 24 seeds): NPO under-unlearns, mean
leakage -0.511 (95% CI [-0.537, -0.485]) full, -0.512 ([-0.555, -0.469])
quick — its membership AUC stops near 0.75 where the canaries' wrong labels
are no longer predicted but still likelier than a never-seen example's;
gradient ascent over-unlearns (+0.058 full, +0.117 quick).

Wall time (`learnscope verify`, this 2-core machine, one torch thread, the
process's start included): full 9 s, --quick 4 s.
"""

from __future__ import annotations

import numpy as np

from learnscope import registry
from learnscope.catalog.base import Arm
from learnscope.catalog.ga_collapse import collapse_level
from learnscope.catalog.unlearning import (
    AUC,
    CANARY_COMPARISON,
    GA,
    NPO,
    ORIGINAL,
    UnlearningPhenomenon,
    canary_arms,
    canary_size,
    crossing,
    updates,
)
from learnscope.results import ArmData, Threshold, Verdict, first_step

SEEDS_MEASURED = {"full": 24, "quick": 24}
UTILITY_GAIN = Threshold(0.1, "UTILITY_GAIN", "least gain of NPO's retain accuracy over gradient ascent's at "
                         "matched forget accuracy", "NPO gain at match", full=(0.133, 0.756), quick=(0.133, 0.750),
                         seeds=SEEDS_MEASURED)
# measured: no NPO seed collapsed, so the ratio is its budget (300) over gradient ascent's collapse step
COLLAPSE_DELAY = Threshold(3.0, "COLLAPSE_DELAY", "least NPO's collapse step (censored at its budget) over "
                           "gradient ascent's", None, full=(4.41, 42.9), quick=(5.45, 37.5), seeds=SEEDS_MEASURED)


def matched_utility(steps: np.ndarray, forget: dict[str, np.ndarray], utility: dict[str, np.ndarray]
                    ) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """At the deepest forget quality every method reaches (per seed, the
    largest of their lowest forget values, [S]): each method's utility and
    step where its forget values first come down to it, interpolated
    between probes. `steps` may be one array for all or {method: steps}."""
    level = np.max(np.stack([np.nanmin(f, axis=1) for f in forget.values()]), axis=0)
    at, where = {}, {}
    for name, f in forget.items():
        s = steps[name] if isinstance(steps, dict) else steps
        where[name], at[name] = crossing(s, f, level, utility[name])
    return level, at, where


@registry.phenomena.register("npo-vs-ga")
class NPOvsGA(UnlearningPhenomenon):
    summary = ("canaries: at matched forget accuracy NPO keeps more retain accuracy than gradient ascent, and "
               "does not collapse where gradient ascent does")
    source = "Negative Preference Optimization: From Catastrophic Collapse to Effective Unlearning"
    headline = "accuracy/retain"
    comparison = CANARY_COMPARISON
    tradeoffs = (("accuracy/forget", "accuracy/retain"), (AUC, "accuracy/test"))
    thresholds = (UTILITY_GAIN, COLLAPSE_DELAY)

    def arms(self, quick: bool) -> list[Arm]:
        return canary_arms(canary_size(quick), [GA, NPO])

    def check(self, arms: dict[str, ArmData]) -> Verdict:
        original = arms[ORIGINAL]
        methods = {name: arms[name] for name in (GA, NPO)}
        steps = {name: arm.curve("accuracy/forget")[0] for name, arm in methods.items()}
        forget = {name: arm.curve("accuracy/forget")[1] for name, arm in methods.items()}
        retain = {name: arm.curve("accuracy/retain")[1] for name, arm in methods.items()}
        level, at, where = matched_utility(steps, forget, retain)
        gain = at[NPO] - at[GA]
        collapse = collapse_level(original.final("accuracy/retain"))
        t = {name: first_step(steps[name], retain[name], collapse, below=True) for name in methods}
        npo_budget = updates(arms[NPO])
        npo_later = np.where(np.isnan(t[NPO]), npo_budget, t[NPO])  # censored at the budget
        sig = self.signature(original.seeds)
        sig.measure("matched forget accuracy", level)
        sig.measure("GA retain accuracy at match", at[GA])
        sig.measure("NPO retain accuracy at match", at[NPO])
        sig.measure("NPO gain at match", gain)
        sig.measure("GA step at match", where[GA])
        sig.measure("NPO step at match", where[NPO])
        sig.measure("GA collapse step", t[GA])
        sig.measure("NPO collapse step (nan: never)", t[NPO])
        sig.measure("GA final retain accuracy", retain[GA][:, -1])
        sig.measure("NPO final retain accuracy", retain[NPO][:, -1])
        sig.measure("NPO lowest forget accuracy", np.nanmin(forget[NPO], axis=1))
        sig.claim(f"at matched forget accuracy NPO keeps at least {UTILITY_GAIN:g} more retain accuracy than "
                  f"gradient ascent", gain >= UTILITY_GAIN,
                  f"at matched forget accuracy {{0:.3f}} NPO keeps retain accuracy {{1:.3f}}, gradient ascent "
                  f"{{2:.3f}}: a gain of {{3:.3f}} < {UTILITY_GAIN:g}", level, at[NPO], at[GA], gain)
        sig.claim("gradient ascent collapses within its budget", np.isfinite(t[GA]),
                  f"gradient ascent did not collapse within its {updates(arms[GA])} steps")
        sig.claim(f"NPO does not collapse before {COLLAPSE_DELAY:g} x gradient ascent's collapse step",
                  npo_later >= COLLAPSE_DELAY * t[GA],
                  lambda s: (f"NPO collapsed at step {t[NPO][s]:.0f}, before {COLLAPSE_DELAY:g} x gradient ascent's "
                             f"{t[GA][s]:.0f}") if np.isfinite(t[NPO][s]) else
                            (f"NPO's budget of {npo_budget} steps is shorter than {COLLAPSE_DELAY:g} x gradient "
                             f"ascent's collapse step {t[GA][s]:.0f}"))
        return sig.verdict()
