"""Experience replay forgets less than naive sequential training on the same
stream and seeds.

Setting: the forgetting entries' permuted digits (catalog/forgetting.py;
full 10 experiences x 300 updates, 8 seeds; --quick 5 x 200, 4 seeds).
Arms: `naive` and `replay` (a reservoir buffer holding a uniform sample of
every training example seen, 100 per experience of the stream: 1000 full,
500 quick; 32 buffer examples join each update's 32).

Signature, per seed: replay's forgetting (the mean largest drop of
accuracy on an earlier experience) is at most MAX_RATIO (0.4) times naive
training's on the same seed.
Measured (ranges across seeds of `learnscope run replay --seeds 16`,
"full", and `--quick --seeds 16`, "quick"; the default seeds are among
them): the ratio 0.15-0.20 full, 0.16-0.29 quick; replay forgot 0.10-0.14
full, 0.07-0.13 quick, naive training 0.60-0.70 full, 0.38-0.55 quick.

Wall time on this 2-core CPU (`learnscope verify`, one torch thread, the
process's start included): full 11 s, --quick 4.5 s.
"""

from __future__ import annotations

from learnscope import registry
from learnscope.catalog.base import ArmData, Phenomenon, Verdict
from learnscope.catalog.forgetting import arm_measures, forgets_less, forgetting_size, strategy_arms
from learnscope.spec import Experiment

MAX_RATIO = 0.4


@registry.phenomena.register("replay")
class ReplayForgetsLess(Phenomenon):
    summary = "permuted digits: experience replay from a small reservoir forgets far less than naive training"
    source = ("classic baseline of the continual papers: On Tiny Episodic Memories in Continual Learning "
              "(Chaudhry et al. 2019), the every-step replay of Does Continual Learning Equally Forget All Parameters?")
    headline = "accuracy/test"

    def arms(self, quick: bool) -> dict[str, Experiment]:
        return strategy_arms(["naive", "replay"], forgetting_size(quick))

    def check(self, arms: dict[str, ArmData]) -> Verdict:
        failures, measures = forgets_less(arm_measures(arms), "replay", "naive", MAX_RATIO)
        return self.verdict(arms["naive"].seeds, failures, measures)
