"""Experience replay forgets less than naive sequential training on the same
stream and seeds.

Setting: the forgetting entries' permuted digits (catalog/forgetting.py;
full 10 experiences x 300 updates, 8 seeds; --quick 5 x 200, 4 seeds).
Arms: `naive` and `replay` (a reservoir buffer holding a uniform sample of
every training example seen, 100 per experience of the stream: 1000 full,
500 quick; 32 buffer examples join each update's 32).

Signature, per seed: replay's forgetting (the mean largest drop of
accuracy on an earlier experience) is at most MAX_RATIO times naive
training's on the same seed. The threshold, with the range measured across
seeds of `learnscope run replay --seeds 16` ("full") and `--quick --seeds
16` ("quick") when it was set (the default seeds are among them), is data
on the phenomenon (`learnscope list replay`). Measured in the same runs:
replay forgot 0.10-0.14 full, 0.07-0.13 quick, naive training 0.60-0.70
full, 0.38-0.55 quick.

Wall time on this 2-core CPU (`learnscope verify`, one torch thread, the
process's start included): full 11 s, --quick 4.5 s.
"""

from __future__ import annotations

from learnscope import registry
from learnscope.catalog.base import Arm, Phenomenon
from learnscope.catalog.forgetting import (
    REPLAY_STREAM_KEYS,
    arm_measures,
    forgets_less,
    forgetting_against,
    forgetting_size,
    strategy_arms,
)
from learnscope.results import ArmData, Threshold, Verdict

MAX_RATIO = Threshold(0.4, "MAX_RATIO", "largest replay forgetting / naive training's forgetting, seed by seed",
                      "replay / naive forgetting", full=(0.15, 0.20), quick=(0.16, 0.29),
                      seeds={"full": 16, "quick": 16})


@registry.phenomena.register("replay")
class ReplayForgetsLess(Phenomenon):
    summary = "permuted digits: experience replay from a small reservoir forgets far less than naive training"
    source = ("classic baseline of the continual papers: On Tiny Episodic Memories in Continual Learning "
              "(Chaudhry et al. 2019), the every-step replay of Does Continual Learning Equally Forget All Parameters?")
    headline = "accuracy/test"
    thresholds = (MAX_RATIO,)
    moves_together = (REPLAY_STREAM_KEYS,)

    def arms(self, quick: bool) -> list[Arm]:
        return strategy_arms(["naive", "replay"], forgetting_size(quick))

    def check(self, arms: dict[str, ArmData]) -> Verdict:
        measures = arm_measures(arms)
        sig = self.signature(arms["naive"].seeds)
        forgetting_against(sig, measures, "replay", "naive")
        forgets_less(sig, measures, "replay", "naive", MAX_RATIO)
        return sig.verdict()
