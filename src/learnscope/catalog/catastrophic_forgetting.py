"""Catastrophic forgetting: a network trained on one experience after another
loses what it learned of the earlier ones; the same network trained on
every experience met so far does not.

Setting (catalog/forgetting.py): permuted digits, the small analogue of
the permuted MNIST of "Catastrophic Interference is Mitigated in
Naturalistic Power-Law Learning Environments"; an MLP [100] trained by SGD
(lr 0.1, batches of 32). Full size: 10 experiences x 300 updates, 8 seeds;
--quick: 5 experiences x 200 updates, 4 seeds. Arms, same stream and seeds:
- `naive`: sequential training, one experience at a time;
- `joint`: the same stream, order and number of updates, every update
  drawing from every experience met so far (`joint` with `cumulative:
  true`, the "offline up to now" baseline). It differs from `naive` only in
  keeping access to old data, so it isolates forgetting. (Joint training
  on the whole stream from the start, the upper bound of the strategy
  comparison, ends with backward transfer +0.13 to +0.15 at full size: the
  early diagonal entries R[j, j] are read from a model that has seen little
  of each experience yet.)

Signature, per seed (backward transfer = mean over j < E-1 of R[E-1, j] -
R[j, j]; forgetting = mean over j < E-1 of the largest drop of accuracy on
experience j after it was learned; learnscope.continual). The thresholds,
with the ranges measured across seeds of `learnscope run
catastrophic-forgetting --seeds 16` ("full") and `--quick --seeds 16`
("quick") when they were set (the default seeds are among them), are data
on the phenomenon (`learnscope list catastrophic-forgetting`):
- naive training forgets strongly: backward transfer <= NAIVE_BWT;
- joint training does not: its backward transfer is within JOINT_BWT of
  zero (slightly positive at full size, as it keeps learning experiences it
  met early) and its forgetting is at most JOINT_FORGETTING.
Average accuracy at the end: naive 0.31-0.42, joint 0.83-0.87 (full);
naive 0.49-0.62, joint 0.81-0.85 (quick).

Wall time on this 2-core CPU (`learnscope verify`, one torch thread, the
process's start included): full 9 s, --quick 4.5 s.
"""

from __future__ import annotations

import numpy as np

from learnscope import registry
from learnscope.catalog.base import Arm, Phenomenon
from learnscope.catalog.forgetting import STREAM_KEYS, arm_measures, forgetting_size, strategy_arms
from learnscope.results import ArmData, Threshold, Verdict

SEEDS_MEASURED = {"full": 16, "quick": 16}
NAIVE_BWT = Threshold(-0.3, "NAIVE_BWT", "naive training's largest backward transfer: it forgets strongly",
                      "naive backward transfer", full=(-0.70, -0.60), quick=(-0.55, -0.38), seeds=SEEDS_MEASURED)
JOINT_BWT = Threshold(0.15, "JOINT_BWT", "largest |backward transfer| of joint training on every experience met so far",
                      "joint backward transfer", full=(0.053, 0.086), quick=(-0.005, 0.031), seeds=SEEDS_MEASURED)
JOINT_FORGETTING = Threshold(0.05, "JOINT_FORGETTING", "largest forgetting of joint training",
                             "joint forgetting", full=(-0.019, 0.002), quick=(-0.017, 0.019), seeds=SEEDS_MEASURED)


@registry.phenomena.register("catastrophic-forgetting")
class CatastrophicForgetting(Phenomenon):
    summary = ("permuted digits: sequential training forgets earlier experiences (strongly negative backward "
               "transfer); joint training on every experience met so far does not")
    source = "Catastrophic Interference is Mitigated in Naturalistic Power-Law Learning Environments"
    headline = "accuracy/test"
    thresholds = (NAIVE_BWT, JOINT_BWT, JOINT_FORGETTING)
    moves_together = (STREAM_KEYS,)

    def arms(self, quick: bool) -> list[Arm]:
        [naive] = strategy_arms(["naive"], forgetting_size(quick))
        return [naive, naive.derive("joint", {"interventions": [{"name": "joint", "cumulative": True}]})]

    def check(self, arms: dict[str, ArmData]) -> Verdict:
        measures = arm_measures(arms)
        naive, joint = measures["naive"]["backward_transfer"], measures["joint"]["backward_transfer"]
        joint_forgetting = measures["joint"]["forgetting"]
        sig = self.signature(arms["naive"].seeds)
        sig.measure("naive backward transfer", naive)
        sig.measure("joint backward transfer", joint)
        sig.measure("naive forgetting", measures["naive"]["forgetting"])
        sig.measure("joint forgetting", joint_forgetting)
        sig.measure("naive average accuracy", measures["naive"]["average_accuracy"])
        sig.measure("joint average accuracy", measures["joint"]["average_accuracy"])
        sig.claim(f"naive backward transfer <= {NAIVE_BWT:+g}", naive <= NAIVE_BWT,
                  f"naive backward transfer {{0:+.3f}} > {NAIVE_BWT:+g}: not strongly negative", naive)
        sig.claim(f"joint backward transfer is within +-{JOINT_BWT:g} of zero", np.abs(joint) <= JOINT_BWT,
                  f"joint backward transfer {{0:+.3f}} is not within +-{JOINT_BWT:g} of zero", joint)
        sig.claim(f"joint training forgets at most {JOINT_FORGETTING:g}", joint_forgetting <= JOINT_FORGETTING,
                  f"joint training forgot {{0:.3f}} > {JOINT_FORGETTING:g}", joint_forgetting)
        return sig.verdict()
