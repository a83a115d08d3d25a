"""Bursty in-context classification: trained on bursty sequences, a minimal
attention-only transformer learns to read the query's label off its context
abruptly, after a long plateau, through an induction head; without
burstiness it learns in the weights instead.

Reddy, "The mechanistic basis of data dependence and abrupt learning in an
in-context classification task": the task (`bursty-icl`, vector items),
K = 2048 classes on L = 32 labels, N = 8 item-label pairs, D = 63, eps 0.1,
every training sequence bursty; a two-layer attention-only transformer, one
head per layer (d_model 32: at 64 the same happens, 200 steps sooner, at
twice the cost), AdamW lr 3e-3, batches of 128.

Arms, same seeds and budget:
- `bursty`: burstiness B = 2 (four classes twice each per context), alpha 0;
- `iid`: B = 0 (contexts i.i.d., the query's class usually absent).
The burstiness x Zipf table is a sweep of the bursty arm's spec
(examples/bursty-icl.yaml, see README "Catalog"), whose report draws it as
a heatmap. Measured (4 seeds, 800 steps, mean final accuracy, alpha 0 / 1):
in-context 0.04 / 0.03 at B 0, 0.98 / 0.93 at B 1, 0.99 / 0.97 at B 2,
0.91 / 0.88 at B 4; in-weights 0.33 / 0.79, 0.04 / 0.39, 0.04 / 0.31,
0.04 / 0.33. Any burstiness turns uniform classes from in-weights to
in-context learning; Zipf classes keep in-weights learning of the frequent
ones beside it (Chan et al.'s "both at once").

Both arms are measured on `in_context` (novel classes, never trained on,
mapped onto labels at random per sequence, the query's class in context
B_eval = 2 times: solvable only by reading the context) and `in_weights`
(training classes, i.i.d. context). On `in_context`, a model that knows
which labels the context holds but not which is the query's scores
B_eval / N = 0.25: the plateau the bursty arm sits on, called the floor.

Signature, per seed:
- `bursty` reaches in-context accuracy >= HIGH (0.9);
- abruptly: the rise (from the last probe at most floor + 0.1 to the first
  at HIGH) is at most 1 / MIN_ABRUPTNESS of the plateau before it (from the
  first probe at floor - 0.05 to the start of the rise);
- `iid` never exceeds the floor on in-context accuracy in the same budget;
- the trade-off: `bursty` ends higher than `iid` on in-context accuracy and
  lower on in-weights accuracy;
- the induction head is causal: at the end, mean-ablating the head with the
  highest induction score (`induction_score`: the query's attention on the
  labels that follow the items of its class) drops in-context accuracy to
  at most the floor (probe `head_ablation`).

Measured (probes every 25 steps; the thresholds carry the ranges they were
set from, `learnscope list bursty-icl`):
- quick (4 seeds, 800 steps): the rise starts at steps 425-475 and takes
  75-100 steps after a plateau of 350-425 (abruptness 3.5-5.3); final
  in-context accuracy 0.98-1.00 (bursty) against at most 0.07 (iid, at any
  probe), in-weights accuracy 0.04 [0.02, 0.06] (bursty) against 0.35
  [0.28, 0.42] (iid, mean [95% CI]); the best induction head is layer 1's
  in every seed, and mean-ablating it leaves 0.09-0.10;
- full (8 seeds, 1200 steps): the rise starts at 375-675 and takes 75-100
  steps after a plateau of 275-625 (abruptness 2.75-8.3); final in-context
  accuracy 0.97-1.00 against at most 0.07; in-weights 0.03 [0.02, 0.04]
  against 0.42 [0.39, 0.45]; ablating layer 1's head leaves 0.06-0.09.
"""

from __future__ import annotations

import numpy as np

from learnscope import registry
from learnscope.catalog.base import Arm, Figure, Phenomenon
from learnscope.results import ArmData, Bands, Threshold, Verdict, first_step
from learnscope.spec import Experiment

SEEDS_MEASURED = {"full": 8, "quick": 4}
HIGH = Threshold(0.9, "HIGH", "in-context accuracy the bursty arm reaches: the rise's end", "final in-context",
                 full=(0.97, 1.0), quick=(0.98, 1.0), seeds=SEEDS_MEASURED)
MIN_ABRUPTNESS = Threshold(2.0, "MIN_ABRUPTNESS", "least plateau length / rise length (steps)", "abruptness",
                           full=(2.75, 8.33), quick=(3.5, 5.33), seeds=SEEDS_MEASURED)
LEAVE = 0.1  # the rise starts at the last probe within this of the floor
REACH = 0.05  # the plateau starts at the first probe within this of the floor
SPLITS = ["in_context", "in_weights"]
PROBED = 256  # examples of each split probed


INDUCTION = {"name": "induction_score", "split": "in_context", "queries": "matched", "rows": [-1],
             "max_examples": PROBED}
CIRCUIT = [INDUCTION, {"name": "previous_token_score", "split": "in_context", "max_examples": PROBED},
           {"name": "head_ablation", "split": "in_context", "max_examples": PROBED}]


def icl_experiment(quick: bool, burstiness: int = 2, alpha: float = 0.0, heads: int = 1,
                   circuit: list | None = None) -> Experiment:
    """The setting, with accuracy and in-context loss probed, and the `circuit` probes."""
    steps = 800 if quick else 1200
    probes: list = [{"name": "accuracy", "splits": SPLITS, "max_examples": PROBED},
                    {"name": "loss", "splits": ["in_context"], "max_examples": PROBED}, *(circuit or [])]
    return Experiment.model_validate({
        "task": {"name": "bursty-icl", "classes": 2048, "labels": 32, "context": 8, "dim": 63, "eps": 0.1,
                 "burstiness": burstiness, "in_context_burstiness": 2, "p_bursty": 1.0, "alpha": alpha,
                 "items": "vectors", "train_sequences": 40000, "test_sequences": 512},
        "model": {"name": "transformer", "layers": 2, "d_model": 32, "heads": heads, "attn_only": True,
                  "layernorm": True},
        "recipe": {"optimizer": "adamw", "lr": 3e-3, "weight_decay": 0.0, "batch_size": 128, "steps": steps,
                   "probe_every": 25, "probe_log_points": 0},
        "probes": probes,
        "seeds": list(range(4 if quick else 8)),
    })


def floor(arm: ArmData) -> float:
    """B_eval / N: in-context accuracy of guessing among the context's labels."""
    task = arm.experiment.task
    return task.eval_burstiness / task.context  # type: ignore[attr-defined]


def rise(arm: ArmData) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per seed (plateau start, rise start, rise end) in steps: the first probe
    within REACH of the floor, the last within LEAVE of it before the end, the
    first at HIGH (nan where in-context accuracy never reaches HIGH)."""
    steps, accuracy = arm.curve("accuracy/in_context")
    level = floor(arm)
    end = first_step(steps, accuracy, HIGH)
    start = first_step(steps, accuracy, level - REACH)
    leave = np.full(len(end), np.nan)
    for s, t in enumerate(end):
        before = (steps < t) & (accuracy[s] <= level + LEAVE)
        if np.isfinite(t) and before.any():
            leave[s] = steps[before].max()
    return start, leave, end


def best_head(arm: ArmData) -> tuple[list[str], np.ndarray]:
    """The heads' names (L{l}H{h}) and, per seed, the index of the head with the highest final induction score."""
    heads = sorted(name.split("/")[1] for name in arm.frame["name"].unique()
                   if name.startswith("head_ablation/"))
    scores = np.stack([arm.final(f"induction_score/{head}") for head in heads], axis=1)
    return heads, np.nanargmax(np.nan_to_num(scores, nan=-1.0), axis=1)


@registry.phenomena.register("bursty-icl")
class BurstyICL(Phenomenon):
    summary = ("bursty contexts make a 2-layer attention-only transformer learn in context abruptly, through an "
               "induction head; i.i.d. contexts make it learn in the weights")
    source = "The mechanistic basis of data dependence and abrupt learning in an in-context classification task"
    headline = "accuracy/in_context"
    thresholds = (HIGH, MIN_ABRUPTNESS)
    comparison = {"accuracy/in_context": "in-context accuracy", "accuracy/in_weights": "in-weights accuracy"}

    def arms(self, quick: bool) -> list[Arm]:
        return [Arm("bursty", icl_experiment(quick, 2, circuit=CIRCUIT)), Arm("iid", icl_experiment(quick, 0))]

    def check(self, arms: dict[str, ArmData]) -> Verdict:
        bursty, iid = arms["bursty"], arms["iid"]
        level = floor(bursty)
        start, leave, end = rise(bursty)
        plateau, rising = leave - start, end - leave
        with np.errstate(divide="ignore", invalid="ignore"):
            abruptness = plateau / rising
        heads, best = best_head(bursty)
        seeds = np.arange(len(best))
        ablated = np.stack([bursty.final(f"head_ablation/{head}") for head in heads], axis=1)[seeds, best]
        iid_peak = np.nanmax(iid.curve("accuracy/in_context")[1], axis=1)
        icl = {name: arms[name].final("accuracy/in_context") for name in ("bursty", "iid")}
        iwl = {name: arms[name].final("accuracy/in_weights") for name in ("bursty", "iid")}

        sig = self.signature(bursty.seeds)
        sig.measure("final in-context", icl["bursty"])
        sig.measure("rise start", leave)
        sig.measure("rise end", end)
        sig.measure("plateau", plateau)
        sig.measure("rise", rising)
        sig.measure("abruptness", abruptness)
        sig.measure("iid peak in-context", iid_peak)
        sig.measure("best induction head", best.astype(float))
        sig.measure("ablated in-context", ablated)
        sig.claim(f"bursty: in-context accuracy reaches {HIGH:g}", np.isfinite(end),
                  f"bursty: in-context accuracy never reached {HIGH:g}")
        sig.claim(f"the rise is at most 1/{MIN_ABRUPTNESS:g} of the plateau before it",
                  np.nan_to_num(abruptness, nan=0.0) >= MIN_ABRUPTNESS,
                  lambda s: f"plateau {plateau[s]:.0f} steps, rise {rising[s]:.0f} steps")
        sig.claim(f"iid: in-context accuracy never above the floor {level:g}", iid_peak <= level,
                  lambda s: f"iid in-context accuracy reached {iid_peak[s]:.2f}")
        sig.claim("bursty ends higher in context and lower in weights than iid",
                  (icl["bursty"] > icl["iid"]) & (iwl["bursty"] < iwl["iid"]),
                  lambda s: f"in-context {icl['bursty'][s]:.2f} vs {icl['iid'][s]:.2f}, in-weights "
                            f"{iwl['bursty'][s]:.2f} vs {iwl['iid'][s]:.2f}")
        sig.claim(f"ablating the best induction head leaves in-context accuracy <= the floor {level:g}",
                  ablated <= level,
                  lambda s: f"ablating {heads[best[s]]} leaves {ablated[s]:.2f}")
        return sig.verdict()

    def figures(self, arms: dict[str, ArmData]) -> list[Figure]:
        bursty = arms["bursty"]
        steps, icl = bursty.curve("accuracy/in_context")
        heads, best = best_head(bursty)
        scores = np.stack([bursty.curve(f"induction_score/{head}")[1] for head in heads], axis=1)  # [S, H, T]
        induction = scores[np.arange(len(best)), best]
        _, uniform = bursty.curve("induction_score/uniform")
        figures: list[Figure] = [Bands(
            "In-context accuracy and the induction score of each seed's best head (the query's attention on "
            "the labels after the items of its class) rise together, after a plateau at the floor B/N, where "
            "even attention scores the flat line.",
            "bursty: in-context accuracy and the induction head", "step", "value",
            [("in-context accuracy", steps, icl), ("induction score, best head", steps, induction),
             ("induction score of even attention", steps, uniform)], ylim=(0.0, 1.02))]
        return figures
