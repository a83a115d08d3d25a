"""Eight continual-learning strategies on one stream, ranked: the reference
comparison of the forgetting family (../shared/catalog.md, family 4).

Setting (catalog/forgetting.py gives the stream, the model and every
strategy's parameters, with how they were measured): permuted digits, 5
experiences, an MLP [100] trained by SGD (lr 0.1, batches of 32). Full
size: 300 updates per experience, 8 seeds; --quick: 200 updates per
experience, 4 seeds (at 100 updates joint's lead over replay shrank to
0.008 in one of 16 seeds). Arms, same stream and seeds: naive, joint, ewc, si,
replay, power-law-rehearsal, lwf, agem. The report and `learnscope run`
rank them by average accuracy, with backward transfer, forgetting and
forward transfer, each with its 95% CI (Student t)
(learnscope.continual.ranking).

Signature, per seed, two claims about the ends of the ranking. Measured =
ranges across seeds of `learnscope run continual-strategies --seeds 16`
("full") and `--quick --seeds 16` ("quick"); the default seeds are among
them:
- joint training, which never loses access to any experience, has the
  highest average accuracy of the eight arms (its lead over the next arm,
  replay in every seed but one, measured 0.034-0.074 full, 0.023-0.067
  quick; joint's average accuracy 0.87-0.91 full, 0.84-0.89 quick);
- naive sequential training forgets the most of the eight arms (its
  forgetting exceeds the next largest, EWC's, LwF's, SI's or A-GEM's
  depending on the seed, by 0.10-0.21 full, 0.07-0.20 quick; naive
  forgetting 0.40-0.55 full, 0.38-0.55 quick).
The middle of the ranking is not checked: EWC, SI, A-GEM and LwF lie
within a few hundredths of each other in average accuracy and change
places from seed to seed (README, "Strategy comparison on digits").

Wall time on this 2-core CPU (`learnscope verify`, one torch thread, the
process's start included): full 16 s, --quick 9 s.
"""

from __future__ import annotations

import numpy as np

from learnscope import registry
from learnscope.catalog.base import Arm, Phenomenon
from learnscope.catalog.forgetting import REPLAY_STREAM_KEYS, StreamSize, arm_measures, strategy_arms, strategy_names
from learnscope.results import ArmData, Verdict

FULL = StreamSize(experiences=5, updates=300, seeds=8)
QUICK = StreamSize(experiences=5, updates=200, seeds=4)


def leader(measures: dict[str, dict[str, np.ndarray]], measure: str) -> tuple[np.ndarray, np.ndarray]:
    """Per seed: the index (in the arms' order) of the arm with the largest
    value of `measure`, and that value's lead over the second largest."""
    values = np.stack([m[measure] for m in measures.values()])  # [arms, S]
    ordered = np.sort(values, axis=0)
    return values.argmax(axis=0), ordered[-1] - ordered[-2]


@registry.phenomena.register("continual-strategies")
class ContinualStrategies(Phenomenon):
    summary = ("permuted digits, the continual-learning strategies ranked by average accuracy and backward "
               "transfer: joint best, naive forgets most")
    source = ("Catastrophic Interference is Mitigated in Naturalistic Power-Law Learning Environments; the "
              "classic baselines of the continual papers (EWC, SI, experience replay, LwF, A-GEM)")
    headline = "accuracy/test"
    moves_together = (REPLAY_STREAM_KEYS,)

    def arms(self, quick: bool) -> list[Arm]:
        return strategy_arms(strategy_names(), QUICK if quick else FULL)

    def check(self, arms: dict[str, ArmData]) -> Verdict:
        measures = arm_measures(arms)
        names = list(measures)
        best, lead = leader(measures, "average_accuracy")
        most, excess = leader(measures, "forgetting")
        sig = self.signature(arms["naive"].seeds)
        sig.measure("joint average accuracy", measures["joint"]["average_accuracy"])
        sig.measure("lead of the highest average accuracy", lead)
        sig.measure("naive forgetting", measures["naive"]["forgetting"])
        sig.measure("excess of the largest forgetting", excess)
        sig.claim("joint training has the highest average accuracy of the arms",
                  np.array([names[b] == "joint" for b in best], dtype=bool),
                  lambda s: f"{names[best[s]]}, not joint, has the highest average accuracy")
        sig.claim("naive training forgets the most of the arms",
                  np.array([names[m] == "naive" for m in most], dtype=bool),
                  lambda s: f"{names[most[s]]}, not naive, forgets the most")
        return sig.verdict()
