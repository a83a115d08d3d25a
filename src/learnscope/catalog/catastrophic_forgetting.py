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
experience j after it was learned; learnscope.continual). Measured = ranges
across seeds of `learnscope run catastrophic-forgetting --seeds 16` ("full")
and `--quick --seeds 16` ("quick"); the default seeds are among them:
- naive training forgets strongly: backward transfer <= NAIVE_BWT (-0.3)
  (measured -0.70 to -0.60 full, -0.55 to -0.38 quick);
- joint training does not: its backward transfer is within JOINT_BWT
  (0.15) of zero (measured +0.053 to +0.086 full, -0.005 to +0.031 quick:
  slightly positive, as it keeps learning experiences it met early) and
  its forgetting is at most JOINT_FORGETTING (0.05) (measured -0.019 to
  +0.002 full, -0.017 to +0.019 quick).
Average accuracy at the end: naive 0.31-0.42, joint 0.83-0.87 (full);
naive 0.49-0.62, joint 0.81-0.85 (quick).

Wall time on this 2-core CPU (`learnscope verify`, one torch thread, the
process's start included): full 9 s, --quick 4.5 s.
"""

from __future__ import annotations

from learnscope import registry
from learnscope.catalog.base import ArmData, Phenomenon, Verdict
from learnscope.catalog.forgetting import arm_measures, forgetting_size, permuted_digits, strategy
from learnscope.spec import Experiment

NAIVE_BWT = -0.3
JOINT_BWT = 0.15
JOINT_FORGETTING = 0.05


@registry.phenomena.register("catastrophic-forgetting")
class CatastrophicForgetting(Phenomenon):
    summary = ("permuted digits: sequential training forgets earlier experiences (strongly negative backward "
               "transfer); joint training on every experience met so far does not")
    source = "Catastrophic Interference is Mitigated in Naturalistic Power-Law Learning Environments"
    headline = "accuracy/test"

    def arms(self, quick: bool) -> dict[str, Experiment]:
        size = forgetting_size(quick)
        return {"naive": permuted_digits(size, strategy("naive", size.experiences)),
                "joint": permuted_digits(size, [{"name": "joint", "cumulative": True}])}

    def check(self, arms: dict[str, ArmData]) -> Verdict:
        measures = arm_measures(arms)
        naive, joint = measures["naive"]["backward_transfer"], measures["joint"]["backward_transfer"]
        joint_forgetting = measures["joint"]["forgetting"]
        failures = []
        for n, j, f in zip(naive, joint, joint_forgetting):
            if not n <= NAIVE_BWT:
                why = f"naive backward transfer {n:+.3f} > {NAIVE_BWT:+g}: not strongly negative"
            elif not abs(j) <= JOINT_BWT:
                why = f"joint backward transfer {j:+.3f} is not within +-{JOINT_BWT:g} of zero"
            elif not f <= JOINT_FORGETTING:
                why = f"joint training forgot {f:.3f} > {JOINT_FORGETTING:g}"
            else:
                why = ""
            failures.append(why)
        return self.verdict(arms["naive"].seeds, failures, {
            "naive backward transfer": naive.tolist(),
            "joint backward transfer": joint.tolist(),
            "naive forgetting": measures["naive"]["forgetting"].tolist(),
            "joint forgetting": joint_forgetting.tolist(),
            "naive average accuracy": measures["naive"]["average_accuracy"].tolist(),
            "joint average accuracy": measures["joint"]["average_accuracy"].tolist(),
        })
