"""Nested dropout orders a representation: truncated to its first k units,
a layer trained with nested dropout loses accuracy gracefully and in order
as k falls; the same layer trained plainly loses it abruptly.

Sources: "Learning Ordered Representations with Nested Dropout" (Rippel et
al. 2014), and its use on a classifier's features in "Compressing Features
for Learning with Noisy Labels" (also "SortedNet", "FlexTok": nested
sub-networks and token counts).

Setting: digits (8x8, 1347 training images), an MLP with one hidden layer
of K ReLU units, Adam lr 1e-3, batches of 64, same seeds and batches:
- `plain`: trained as it is;
- `nested`: `nested-dropout` on the hidden layer, rho = RHO (per example
  b ~ Geometric(0.1), mean 10, units b+1..K zeroed).
The `truncation` probe reads test accuracy with only the first k hidden
units kept, k = 1, 2, 4, ..., K. Quick: K = 64, 1000 updates, 4 seeds;
full: K = 128, 2000 updates, 8 seeds.

Signature, per seed:
- in order: the nested layer's truncated accuracy never falls by more
  than SLACK as k grows along the grid;
- graceful: kept to its first 8 units, the nested layer keeps at least
  NESTED_SHARE of its own full accuracy;
- abrupt without it: the plain layer, kept to its first 8 units, keeps
  a share of its own accuracy at least SHARE_GAP below the nested one's.
Measured over 16 seeds (quick / full): the plain layer keeps 0.22-0.50 /
0.20-0.62 of its accuracy with 8 units, the nested one 0.76-0.97 /
0.81-0.99; full-width test accuracy 0.90-0.95 / 0.94-0.97 nested against
0.95-0.98 / 0.97-0.98 plain: nested dropout costs a little at full width
(measured, not claimed).

The thresholds, with the ranges measured across seeds when they were set
(`learnscope run nested-dropout --seeds 16` and `--quick --seeds 16`; the
default seeds are among them), are data on the phenomenon (`learnscope
list nested-dropout`).
"""

from __future__ import annotations

import numpy as np

from learnscope import registry
from learnscope.catalog.base import Arm, Phenomenon
from learnscope.results import ArmData, Threshold, Verdict
from learnscope.spec import Experiment

RHO = 0.1
FEW = 8  # units kept for the graceful-against-abrupt comparison
SEEDS_MEASURED = {"full": 16, "quick": 16}
SLACK = Threshold(0.03, "SLACK", "most the nested layer's truncated test accuracy may fall as k grows",
                  "nested: largest fall as k grows", full=(-0.0045, 0.0089), quick=(-0.0156, 0.0134),
                  seeds=SEEDS_MEASURED)
NESTED_SHARE = Threshold(0.7, "NESTED_SHARE", f"least share of its full-width accuracy the nested layer keeps "
                         f"with its first {FEW} units", f"nested: share kept at k={FEW}", full=(0.806, 0.993),
                         quick=(0.759, 0.966), seeds=SEEDS_MEASURED)
SHARE_GAP = Threshold(0.2, "SHARE_GAP", f"least excess of the nested layer's share kept at k = {FEW} over the plain "
                      f"layer's", f"share gap at k={FEW}", full=(0.293, 0.781), quick=(0.388, 0.697),
                      seeds=SEEDS_MEASURED)
PLAIN, NESTED = "plain", "nested"


def widths(quick: bool) -> list[int]:
    width = 64 if quick else 128
    return [2**i for i in range(width.bit_length()) if 2**i <= width]


def experiment(quick: bool, nested: bool) -> Experiment:
    keep = widths(quick)
    steps = 1000 if quick else 2000
    return Experiment.model_validate({
        "task": {"name": "digits"},
        "model": {"name": "mlp", "hidden": [keep[-1]]},
        "recipe": {"optimizer": "adam", "lr": 1e-3, "batch_size": 64, "steps": steps, "probe_every": steps // 4,
                   "probe_log_points": 0},
        "interventions": [{"name": "nested-dropout", "site": "hidden.0", "rho": RHO}] if nested else [],
        "probes": [{"name": "accuracy", "splits": ["test"]},
                   {"name": "truncation", "site": "hidden.0", "keep": keep}],
        "seeds": 4 if quick else 8,
    })


@registry.phenomena.register("nested-dropout")
class NestedDropoutOrder(Phenomenon):
    summary = ("truncated to its first k units, a layer trained with nested dropout degrades gracefully and in "
               "order; trained plainly, abruptly (at k = 8)")
    source = "Compressing Features for Learning with Noisy Labels"
    headline = "accuracy/test"
    thresholds = (SLACK, NESTED_SHARE, SHARE_GAP)

    def arms(self, quick: bool) -> list[Arm]:
        return [Arm(PLAIN, experiment(quick, False)), Arm(NESTED, experiment(quick, True))]

    def check(self, arms: dict[str, ArmData]) -> Verdict:
        plain, nested = arms[PLAIN], arms[NESTED]
        keep = next(probe.keep for probe in plain.experiment.probes if probe.registry_name == "truncation")
        sig = self.signature(plain.seeds)

        def curve(arm: ArmData) -> np.ndarray:
            return np.stack([arm.final(f"truncation/test/k{k}") for k in keep], axis=1)

        nested_curve, plain_curve = curve(nested), curve(plain)
        few = keep.index(FEW)
        largest_fall = sig.measure("nested: largest fall as k grows",
                                   np.max(nested_curve[:, :-1] - nested_curve[:, 1:], axis=1))
        nested_share = sig.measure(f"nested: share kept at k={FEW}", nested_curve[:, few] / nested_curve[:, -1])
        plain_share = sig.measure(f"plain: share kept at k={FEW}", plain_curve[:, few] / plain_curve[:, -1])
        sig.measure("nested: full-width accuracy", nested_curve[:, -1])
        sig.measure("plain: full-width accuracy", plain_curve[:, -1])
        for column, k in enumerate(keep):
            sig.measure(f"nested: accuracy at k={k}", nested_curve[:, column])
            sig.measure(f"plain: accuracy at k={k}", plain_curve[:, column])
        sig.claim(f"in order: the nested layer's truncated accuracy never falls by more than {SLACK:g} as k grows",
                  largest_fall <= SLACK, "it falls by {0:.3f}", largest_fall)
        sig.claim(f"graceful: with its first {FEW} units the nested layer keeps >= {NESTED_SHARE:g} of its accuracy",
                  nested_share >= NESTED_SHARE, "it keeps {0:.3f}", nested_share)
        gap = sig.measure(f"share gap at k={FEW}", nested_share - plain_share)
        sig.claim(f"abrupt without it: with its first {FEW} units the plain layer keeps at least {SHARE_GAP:g} less "
                  f"of its accuracy", gap >= SHARE_GAP, "it keeps {0:.3f} less", gap)
        return sig.verdict()
