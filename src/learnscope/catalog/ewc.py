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
on an earlier experience) is at most MAX_RATIO (0.85) times naive
training's on the same seed.
Measured (ranges across seeds of `learnscope run ewc --seeds 16`, "full",
and `--quick --seeds 16`, "quick"; the default seeds are among them): the
ratio 0.58-0.74 full, 0.56-0.79 quick; EWC forgot 0.37-0.46 full,
0.22-0.38 quick, naive training 0.60-0.70 full, 0.38-0.55 quick. EWC is
limited here by the stability of its penalty under plain SGD (lamb above)
and by the small network: its average accuracy, 0.42-0.52 full, stays far
below what replay reaches (0.79-0.84).

Wall time on this 2-core CPU (`learnscope verify`, one torch thread, the
process's start included): full 10 s, --quick 4.4 s.
"""

from __future__ import annotations

from learnscope import registry
from learnscope.catalog.base import ArmData, Phenomenon, Verdict
from learnscope.catalog.forgetting import arm_measures, forgets_less, forgetting_size, strategy_arms
from learnscope.spec import Experiment

MAX_RATIO = 0.85


@registry.phenomena.register("ewc")
class EWCForgetsLess(Phenomenon):
    summary = "permuted digits: elastic weight consolidation forgets less than naive training, seed by seed"
    source = ("classic baseline of the continual papers: Overcoming catastrophic forgetting in neural networks "
              "(Kirkpatrick et al. 2017), the regularization method compared in Catastrophic Interference is "
              "Mitigated in Naturalistic Power-Law Learning Environments")
    headline = "accuracy/test"

    def arms(self, quick: bool) -> dict[str, Experiment]:
        return strategy_arms(["naive", "ewc"], forgetting_size(quick))

    def check(self, arms: dict[str, ArmData]) -> Verdict:
        failures, measures = forgets_less(arm_measures(arms), "ewc", "naive", MAX_RATIO)
        return self.verdict(arms["naive"].seeds, failures, measures)
