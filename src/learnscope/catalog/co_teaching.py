"""Co-teaching under label noise: two peers that each pick the examples of
the batch they fit best for the other to learn from keep a test accuracy
that plain training of the same network loses as it memorizes the wrong
labels ("Co-teaching: Robust Training of Deep Neural Networks with
Extremely Noisy Labels", Han et al. 2018; combined with compression in
"Compressing Features for Learning with Noisy Labels").

Setting: a 10-class Gaussian mixture in 32 dimensions (separation 3) with
NOISE (40%) of the training labels replaced by another class (symmetric
noise: `label_noise`), a two-layer ReLU MLP, Adam lr 1e-3, batches of
128, same seeds and batches:
- `plain`: every example of the batch;
- `co-teaching`: the seeds in pairs (`co-teaching`, forget rate 0.4, the
  noise rate, reached linearly over the first WARMUP updates): each peer
  learns from the 60% of the batch its partner fits best. A pair shares
  its first seed's data and batches, so a peer is compared with the plain
  run of that first seed: the same data and batches, and for the first
  peer the same initialization.
Quick: 1024 training examples, 256 hidden units, 500 updates, 8 seeds
(4 pairs); full: 2048, 512, 1000 updates, 16 seeds (8 pairs).

Signature, per pair: the test accuracy of the pair's worse peer exceeds
the plain run's (its first seed's) by at least MARGIN at the end.
Measured over 16 pairs (quick / full): plain training ends at test
accuracy 0.51-0.57 / 0.49-0.56 and fits every noisy training label; the
peers end at 0.67-0.75 / 0.71-0.79 and fit 0.26-0.34 / 0.24-0.28 of the
noisy labels (their given, wrong class).

The thresholds, with the ranges measured across seeds when they were set
(`learnscope run co-teaching --seeds 32` and `--quick --seeds 32`, 16
pairs; the default seeds are among them), are data on the phenomenon
(`learnscope list co-teaching`).
"""

from __future__ import annotations

import numpy as np

from learnscope import registry
from learnscope.catalog.base import Arm, Phenomenon
from learnscope.results import ArmData, Threshold, Verdict
from learnscope.spec import Experiment

NOISE = 0.4
WARMUP = 300
SEEDS_MEASURED = {"full": 16, "quick": 16}  # pairs
MARGIN = Threshold(0.05, "MARGIN", "least excess of the worse peer's final test accuracy over plain training's",
                   "worse peer over plain", full=(0.155, 0.260), quick=(0.146, 0.210), seeds=SEEDS_MEASURED)
PLAIN, CO = "plain", "co-teaching"
SPLITS = ["test", "train_noisy", "train_clean"]


def experiment(quick: bool, co_teaching: bool) -> Experiment:
    samples, hidden, steps, seeds = (1024, 256, 500, 8) if quick else (2048, 512, 1000, 16)
    return Experiment.model_validate({
        "task": {"name": "gaussian-mixture", "classes": 10, "dim": 32, "separation": 3.0, "samples": samples,
                 "test_samples": 1024, "label_noise": NOISE},
        "model": {"name": "mlp", "hidden": [hidden, hidden]},
        "recipe": {"optimizer": "adam", "lr": 1e-3, "batch_size": 128, "steps": steps, "probe_every": steps // 5,
                   "probe_log_points": 0},
        "interventions": [{"name": "co-teaching", "forget_rate": NOISE, "warmup": WARMUP}] if co_teaching else [],
        "probes": [{"name": "accuracy", "splits": SPLITS}],
        "seeds": seeds,
    })


@registry.phenomena.register("co-teaching")
class CoTeachingUnderNoise(Phenomenon):
    summary = "under 40% symmetric label noise, co-teaching peers keep a test accuracy plain training loses"
    source = "Compressing Features for Learning with Noisy Labels"  # the catalog's; the method is Han et al.'s
    headline = "accuracy/test"
    thresholds = (MARGIN,)

    def arms(self, quick: bool) -> list[Arm]:
        return [Arm(PLAIN, experiment(quick, False)), Arm(CO, experiment(quick, True))]

    def check(self, arms: dict[str, ArmData]) -> Verdict:
        plain, co = arms[PLAIN], arms[CO]
        sig = self.signature(co.seeds[0::2])  # one verdict per pair, named by its first seed
        first, second = co.final("accuracy/test")[0::2], co.final("accuracy/test")[1::2]
        reference = plain.final("accuracy/test")[0::2]
        worse = sig.measure("worse peer over plain", np.minimum(first, second) - reference)
        sig.measure("plain: test", reference)
        sig.measure("first peer: test", first)
        sig.measure("second peer: test", second)
        sig.measure("plain: noisy labels fitted", plain.final("accuracy/train_noisy")[0::2])
        sig.measure("co-teaching: noisy labels fitted", co.final("accuracy/train_noisy")[0::2])
        sig.claim(f"both peers end at least {MARGIN:g} above plain training's test accuracy", worse >= MARGIN,
                  "the worse peer is {0:+.3f} from plain training", worse)
        return sig.verdict()
