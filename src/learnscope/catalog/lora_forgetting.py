"""Forgetting under low-rank fine-tuning grows with the adapters' rank: a
pretrained model fine-tuned on a new task with LoRA forgets its first task
less at rank 1 than at rank 8, and less at rank 8 than at rank 32; full
fine-tuning is the reference.

Soutif-Cormerais et al., "An Empirical Analysis of Forgetting in Pre-trained
Models with Incremental Low-Rank Updates" (a lower LoRA rank forgets less of
the pretraining task); Ren et al., "Analyzing and Reducing Catastrophic
Forgetting in Parameter Efficient Tuning".

Setting: scikit-learn's 8x8 digits split into two experiences of five
classes (`split-stream`, `scenario: task`: only an example's own
experience's classes compete for it, as a pretrained backbone keeps its
own head for its own task), an MLP with one hidden layer of 100 ReLU
units. Arms, same seeds:
- `pretrain`: the plain MLP on experience 0 alone (`recipe.train_split:
  train/0`), SGD lr 0.1, batches of 32, 300 updates;
- `full`: from `pretrain`'s last checkpoint, every parameter fine-tuned on
  experience 1 (`train/1`), Adam lr 1e-2, batches of 32, 1000 updates
  (2000 at full size);
- `lora-1`, `lora-8`, `lora-32`: the same fine-tuning with the hidden layer
  frozen under LoRA adapters of that rank (`model: lora`, targets
  `hidden.0`) and the head trained in full (`train_full: [head]`, PEFT's
  `modules_to_save`: the new classes need their own readout). The
  adapters' scale alpha / r is 1 (alpha = r), so an adapter's step does not
  shrink as its rank grows. With PEFT's fixed alpha = 8 instead (scale 8/r;
  separate runs at lr 1e-3, 4 seeds) forgetting still grew from rank 1 to
  4 to 8, but no longer from 8 to 32.

Forgetting of an arm, per seed: `pretrain`'s final accuracy on experience
0's test split (225 examples) minus the arm's (`forgetting`, in the
comparison table with the new task's accuracy). Signature, per seed:
forgetting grows with the rank, by at least STEP (0.02) at each of
1 -> 8 -> 32.

Measured (16 seeds at each size; `learnscope list lora-forgetting` for the
threshold's range): forgetting at rank 1 is -0.004-0.071 (quick) and
0-0.084 (full), at rank 8 0.071-0.18 and 0.08-0.25, at rank 32 0.14-0.36
and 0.18-0.57; full fine-tuning, the reference, forgets 0.06-0.33 and
0.09-0.41, about as much as rank 8. Every arm learns the new task (test
accuracy 0.94-0.99 at both sizes; rank 1 lowest). Wall time (`learnscope
verify`, one thread, 4 seeds at --quick, 8 at full): see the README's
catalog row.
"""

from __future__ import annotations

import numpy as np

from learnscope import registry
from learnscope.catalog.base import Arm, Phenomenon
from learnscope.results import ArmData, Threshold, Verdict
from learnscope.spec import Experiment

RANKS = (1, 8, 32)
SEEDS_MEASURED = {"full": 16, "quick": 16}
STEP = Threshold(0.02, "STEP", "least extra forgetting from one rank to the next (0.02: over four of the 225 "
                 "test examples of experience 0)", "least forgetting step", full=(0.04, 0.1556),
                 quick=(0.04, 0.1556), seeds=SEEDS_MEASURED)
OLD, NEW = "accuracy/test/0", "accuracy/test/1"


def fine_tune_steps(quick: bool) -> int:
    return 1000 if quick else 2000


def pretrain_experiment(quick: bool) -> Experiment:
    return Experiment.model_validate({
        "task": {"name": "split-stream", "base": {"name": "digits"}, "experiences": 2, "scenario": "task"},
        "model": {"name": "mlp", "hidden": [100]},
        "recipe": {"optimizer": "sgd", "lr": 0.1, "batch_size": 32, "steps": 300, "train_split": "train/0",
                   "probe_every": 100, "probe_log_points": 0},
        "probes": [{"name": "accuracy", "splits": ["test/0", "test/1"]}],
        "seeds": list(range(4 if quick else 8)),
    })


def lora_model(rank: int) -> dict:
    return {"name": "lora", "base": {"name": "mlp", "hidden": [100]}, "rank": rank, "alpha": float(rank),
            "targets": ["hidden.0"], "train_full": ["head"]}


@registry.phenomena.register("lora-forgetting")
class LoRAForgetting(Phenomenon):
    summary = ("fine-tuning a pretrained MLP on a new task with LoRA forgets the first task more as the rank grows "
               "(1 < 8 < 32); rank 1 forgets less than full fine-tuning")
    source = "An Empirical Analysis of Forgetting in Pre-trained Models with Incremental Low-Rank Updates"
    headline = OLD
    thresholds = (STEP,)
    fixed = ("model", "recipe.train_split")
    comparison = {"forgetting": "forgetting of experience 0", NEW: "accuracy on the new task"}

    def arms(self, quick: bool) -> list[Arm]:
        pretrain = Arm("pretrain", pretrain_experiment(quick))
        fine_tune = {"recipe.train_split": "train/1", "recipe.optimizer": "adam", "recipe.lr": 1e-2,
                     "recipe.steps": fine_tune_steps(quick)}
        arms = [pretrain, pretrain.derive("full", fine_tune, starts_from="pretrain")]
        for rank in RANKS:
            arms.append(pretrain.derive(f"lora-{rank}", {**fine_tune, "model": lora_model(rank)},
                                        starts_from="pretrain"))
        return arms

    def derived(self, arms: dict[str, ArmData]) -> dict[str, dict[str, np.ndarray]]:
        before = arms["pretrain"].final(OLD)
        return {name: {"forgetting": before - arm.final(OLD)} for name, arm in arms.items() if name != "pretrain"}

    def check(self, arms: dict[str, ArmData]) -> Verdict:
        forgetting = {name: measures["forgetting"] for name, measures in self.derived(arms).items()}
        sig = self.signature(arms["pretrain"].seeds)
        for name, values in forgetting.items():
            sig.measure(f"{name} forgetting", values)
            sig.measure(f"{name} new-task accuracy", arms[name].final(NEW))
        steps = [forgetting[f"lora-{b}"] - forgetting[f"lora-{a}"] for a, b in zip(RANKS, RANKS[1:])]
        sig.measure("least forgetting step", np.minimum.reduce(steps))
        for (a, b), step in zip(zip(RANKS, RANKS[1:]), steps):
            sig.claim(f"rank {b} forgets at least {STEP:g} more than rank {a}", step >= STEP,
                      lambda s, a=a, b=b, step=step: f"rank {b} forgot {step[s]:+.3f} more than rank {a}")
        return sig.verdict()
