"""Repeated data: a tiny language model trained on a token budget of which
a small share (about 10%) is spent on a small subset repeated R times does
worse on held-out data than the same budget of unique data.

Hernandez et al., "Scaling Laws and Interpretability of Learning from
Repeated Data": with 10% of the tokens a repeated subset, test loss is
worse than the no-repeat control's at the same budget, and the harm is
largest at an intermediate number of repetitions. Here the second part
(the peak) is measured, not claimed: it did not appear (see below).

Setting: `markov-text` (4 successors a token) with the repeated-subset
option: `repeated_sequences` n, `repeats` R, n = SLOTS // R, so the
repeated copies fill 9.4-10% of the train split, whose length stays the
budget; every arm trains one epoch (steps x batch = train_sequences), so
each repeated sequence is seen R times and every other once, and all arms
score the same held-out `test` sequences (256). A 1-layer transformer
(d_model 32, 4 heads, MLP 128), AdamW lr 1e-2 with warmup and cosine decay
(a constant rate left the final loss noisy by +-0.02 between arms), no
weight decay. Quick: 4 seeds, 128 tokens, 2048 sequences of 16 tokens,
batches of 32 (64 steps), 205 slots; full: 8 seeds, 512 tokens, 4096
sequences of 16 tokens, batches of 16 (256 steps), 410 slots.

Arms (same seeds, same budget, same test data):
- `control`: R = 1 (the first SLOTS sequences seen once: all unique data);
- `R-4`, `R-32`, `R-205`: the first SLOTS // R sequences R times each
  (quick: 51, 6, 1 sequences; full: 102, 12, 2).
Every arm probes the loss on `test` and on `repeated` (its repeated
sequences once each: memorized when far below the test loss), and
`induction_score` on test (TransformerLens's detector, all query rows).

Signature, per seed (required share 0.9): harm = an arm's final test loss
minus the control's;
- `R-32` and `R-205` are worse than the control by at least HARM (0.005);
- harm grows from a few repeats to many: harm(R-32) - harm(R-4) >= GROWTH
  (0.01).

Measured (quick 4 seeds, and 8 seeds 0-7 / full 8 seeds), every seed holds:
- control test loss 1.84-1.94 / 1.78-1.87 (the chain's entropy rate is
  below ln 4 = 1.39: both sizes end short of it, the budget binding);
- harm R-4: -0.018 to 0.030 / -0.011 to 0.027 (a few repeats are about
  unique data); R-32: 0.011-0.069 / 0.041-0.058; R-205: 0.034-0.098 /
  0.037-0.079; growth R-32 over R-4: 0.024-0.052 / 0.017-0.058;
- loss on the repeated subset: control 1.78-1.87 / 1.70-1.78, R-4
  1.69-1.78 / 1.49-1.57, R-32 1.02-1.09 / 0.78-0.84, R-205 0.31-0.35 /
  0.23-0.29: the more repeats, the more memorized;
- the induction score of the best head: control 0.006-0.017 / 0.0016-0.0024,
  the repeated arms within 5e-4 of it in every seed; even attention scores
  about as much (`/uniform`). A first-order chain repeats tokens within a
  sequence but gives nothing to copy, so no induction head forms in any arm,
  and this corpus cannot show the paper's damage to induction heads.

The non-monotone harm of the paper (largest at an intermediate R) was not
reproduced. harm(R-32) - harm(R-205), the peak's measure: -0.032 to -0.011
(quick, 8 seeds) and -0.034 to +0.004 (full, positive in 2 of 8 seeds):
the harm rises with R and levels off. In exploratory runs (1 layer,
d_model 32 or 64, 8-32 tokens a sequence, 512 tokens, R from 1 to 410,
4 seeds) it was the same, e.g. 4096 x 16 tokens with cosine decay: R 8
0.012-0.040, R 32 0.047-0.060, R 128 0.049-0.070, R 410 0.050-0.070; a
count model of the chain (add-1/2 bigram counts of the same train splits)
rises monotonically in R as well. A larger model moves towards the
peak without reaching it at a per-seed bar (quick size, 4 seeds, the same
arms with `--set model.layers=2`): at d_model 64 (MLP 256) harm(R-32) -
harm(R-205) is -0.005 to +0.009, at d_model 128 (MLP 512) -0.013 to
+0.025, positive in 3 of 4 seeds, against harms of only 0.010-0.044, so
seed noise of about 0.01 decides the sign. Our reading: on a first-order chain
the repeated sequences are learned as distorted bigram rows, which the
held-out data shares, so a smaller subset seen more often distorts fewer
rows more; the model does not set them apart in context, which is what
would let the harm fall again at the largest R.

Wall time, one thread (`learnscope verify`, load about 1): quick 13.2 s
(12.7 s of CPU); full 1 min 17 s. Same spec and seeds gave the same
numbers in repeated runs, at both sizes.
"""

from __future__ import annotations

import numpy as np

from learnscope import registry
from learnscope.catalog.base import Arm, Phenomenon
from learnscope.results import ArmData, Threshold, Verdict
from learnscope.spec import Experiment

SEEDS_MEASURED = {"full": 8, "quick": 4}
HARM = Threshold(0.005, "HARM", "least final test loss of R-32 and R-205 minus the control's",
                 "least harm (R >= 32)", quick=(0.0114, 0.0515), full=(0.0374, 0.0575), seeds=SEEDS_MEASURED)
GROWTH = Threshold(0.01, "GROWTH", "least harm of R-32 minus harm of R-4", "harm R-32 - harm R-4",
                   quick=(0.0242, 0.0363), full=(0.0170, 0.0578), seeds=SEEDS_MEASURED)

CONTROL = "control"
REPEATS = {"R-4": 4, "R-32": 32, "R-205": 205}
TEST_LOSS, REPEATED_LOSS, INDUCTION = "loss/test", "loss/repeated", "induction_score/max"


def size(quick: bool) -> dict:
    if quick:
        return {"vocab": 128, "train": 2048, "length": 16, "batch": 32, "slots": 205, "seeds": 4}
    return {"vocab": 512, "train": 4096, "length": 16, "batch": 16, "slots": 410, "seeds": 8}


def repeated_experiment(quick: bool, repeats: int) -> Experiment:
    s = size(quick)
    steps = s["train"] // s["batch"]  # one epoch: every unique sequence once, every repeated one R times
    return Experiment.model_validate({
        "task": {"name": "markov-text", "vocab": s["vocab"], "length": s["length"], "branching": 4,
                 "train_sequences": s["train"], "test_sequences": 256,
                 "repeated_sequences": s["slots"] // repeats, "repeats": repeats},
        "model": {"name": "transformer", "layers": 1, "d_model": 32, "heads": 4, "d_mlp": 128},
        "recipe": {"optimizer": "adamw", "lr": 1e-2, "weight_decay": 0.0, "batch_size": s["batch"], "steps": steps,
                   "schedule": "warmup_cosine", "warmup_steps": 10 if quick else 20, "probe_every": steps // 4,
                   "probe_log_points": 0, "checkpoint_every": None},
        "probes": [{"name": "loss", "splits": ["test", "repeated"]},
                   {"name": "induction_score", "split": "test", "max_examples": 128}],
        "seeds": list(range(s["seeds"])),
    })


@registry.phenomena.register("repeated-data")
class RepeatedData(Phenomenon):
    summary = ("10% of a tiny LM's token budget spent on a subset repeated R times makes its held-out loss worse "
               "than unique data's, more so for many repeats than for few")
    source = "Scaling Laws and Interpretability of Learning from Repeated Data"
    headline = TEST_LOSS
    required_share = 0.9
    thresholds = (HARM, GROWTH)
    # the arms are the repetition counts: a global change of these would make them one arm
    fixed = ("task.repeated_sequences", "task.repeats", "task.train_sequences", "recipe.steps",
             "recipe.batch_size")
    comparison = {TEST_LOSS: "held-out test loss", REPEATED_LOSS: "loss on the repeated subset",
                  INDUCTION: "best head's induction score"}

    def arms(self, quick: bool) -> list[Arm]:
        return [Arm(CONTROL, repeated_experiment(quick, 1))] + [
            Arm(name, repeated_experiment(quick, r)) for name, r in REPEATS.items()]

    def check(self, arms: dict[str, ArmData]) -> Verdict:
        control = arms[CONTROL]
        base = control.final(TEST_LOSS)
        sig = self.signature(control.seeds)
        sig.measure("control test loss", base)
        sig.measure("control repeated loss", control.final(REPEATED_LOSS))
        sig.measure("control induction", control.final(INDUCTION))
        harm = {}
        for name in REPEATS:
            harm[name] = sig.measure(f"harm {name}", arms[name].final(TEST_LOSS) - base)
            sig.measure(f"{name} repeated loss", arms[name].final(REPEATED_LOSS))
            sig.measure(f"{name} induction - control", arms[name].final(INDUCTION) - control.final(INDUCTION))
        least = sig.measure("least harm (R >= 32)", np.minimum(harm["R-32"], harm["R-205"]))
        growth = sig.measure("harm R-32 - harm R-4", harm["R-32"] - harm["R-4"])
        # the paper's peak: positive when the most repeats harm less than the middle count
        sig.measure("harm R-32 - harm R-205", harm["R-32"] - harm["R-205"])
        sig.claim(f"R-32 and R-205 end with test loss at least {HARM:g} above the control's", least >= HARM,
                  "a repeated arm's test loss was only {0:.4f} above the control's", least)
        sig.claim(f"harm grows from R-4 to R-32 by at least {GROWTH:g}", growth >= GROWTH,
                  "harm of R-32 exceeded R-4's by only {0:.4f}", growth)
        return sig.verdict()
