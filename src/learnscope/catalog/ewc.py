"""Elastic weight consolidation forgets less than naive sequential training
on the same stream and seeds.

Setting: the forgetting entries' permuted digits (catalog/forgetting.py;
full 10 experiences x 300 updates, 8 seeds; --quick 5 x 200, 4 seeds).
Arms: `naive` and `ewc` (online EWC, Kirkpatrick et al. 2017 with the
online Fisher of Schwarz et al. 2018; lamb 15, gamma 1, the Fisher from
128 single training examples of each finished experience). lamb is the
largest value measured stable with plain SGD at lr 0.1 over 10 experiences
(forgetting.py gives the sweep: lamb 20 made a seed diverge).

Signature, per seed: EWC's forgetting (the mean largest drop of accuracy
on an earlier experience) is at most MAX_RATIO times naive training's on
the same seed. The threshold, with the range measured across seeds of
`learnscope run ewc --seeds 16` ("full") and `--quick --seeds 16`
("quick") when it was set (the default seeds are among them), is data on
the phenomenon (`learnscope list ewc`). Measured in the same runs: EWC
forgot 0.37-0.46 full, 0.22-0.38 quick, naive training 0.60-0.70 full,
0.38-0.55 quick. EWC is limited here by the stability of its penalty under
plain SGD (lamb above) and by the small network: its average accuracy,
0.42-0.52 full, stays far below what replay reaches (0.79-0.84).

Wall time on this 2-core CPU (`learnscope verify`, one torch thread, the
process's start included): full 10 s, --quick 4.4 s.
"""

from __future__ import annotations

from learnscope import registry
from learnscope.catalog.base import Arm, Phenomenon
from learnscope.catalog.forgetting import (
    STREAM_KEYS,
    arm_measures,
    forgets_less,
    forgetting_against,
    forgetting_size,
    strategy_arms,
)
from learnscope.results import ArmData, Threshold, Verdict

MAX_RATIO = Threshold(0.85, "MAX_RATIO", "largest EWC forgetting / naive training's forgetting, seed by seed",
                      "ewc / naive forgetting", full=(0.58, 0.74), quick=(0.56, 0.79), seeds={"full": 16, "quick": 16})


@registry.phenomena.register("ewc")
class EWCForgetsLess(Phenomenon):
    summary = "permuted digits: elastic weight consolidation forgets less than naive training, seed by seed"
    source = ("classic baseline of the continual papers: Overcoming catastrophic forgetting in neural networks "
              "(Kirkpatrick et al. 2017), the regularization method compared in Catastrophic Interference is "
              "Mitigated in Naturalistic Power-Law Learning Environments")
    headline = "accuracy/test"
    thresholds = (MAX_RATIO,)
    moves_together = (STREAM_KEYS,)

    def arms(self, quick: bool) -> list[Arm]:
        return strategy_arms(["naive", "ewc"], forgetting_size(quick))

    def check(self, arms: dict[str, ArmData]) -> Verdict:
        measures = arm_measures(arms)
        sig = self.signature(arms["naive"].seeds)
        forgetting_against(sig, measures, "ewc", "naive")
        forgets_less(sig, measures, "ewc", "naive", MAX_RATIO)
        return sig.verdict()
