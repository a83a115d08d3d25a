"""Retention of few-shot memories: items a tiny language model sees once are
recognized right after, then forgotten fast over the first updates of
further training and slowly after; items it sees a few (8) times are also
recalled right after, and recall too falls fast, then slowly.

Orhan, "Recognition, recall, and retention of few-shot memories in large
language models": a single exposure gives near-perfect recognition (a seen
item against a novel foil, two-alternative forced choice by loss); recall
takes more exposures; as training goes on with new examples, memory for the
items drops steeply over the first updates, then gradually, and some of it
lasts.

Setting: `few-shot-items`, a background corpus (`markov-text`'s chain: 64
tokens, branching 4, `<bos>` and 16 tokens; 4096 training sequences) and 16
items, uniformly random strings of the same length, each with a matched
control (a foil drawn alike, never trained on); a 2-layer transformer
(d_model 64, 4 heads, MLP 256, pre-layernorm).

Arms, same seeds (quick: 4 seeds, 100 + 120 (+ 120) updates; full: 10 seeds,
600 + 1000 (+ 1000) updates):
- `background`: the language model, AdamW lr 3e-3, batches of 16, on the
  background corpus alone;
- `exposed`: from `background`'s last checkpoint, plain SGD (lr 0.7, no
  momentum: the exposure acts in its own update only; with AdamW, lr
  3e-3, in a trial (32 items, d_model 32) its moments carried the items on
  and their gap kept rising for about 18 updates after it), update 0's batch
  replaced by the 16 items (`single-exposure`), then background batches of
  16 only; probed at 16 log-spaced updates and every 20;
- `exposed-few`: also from `background`'s last checkpoint (its parameters;
  the optimizer starts afresh), the background's own recipe (AdamW, lr
  3e-3, batches of 16), with FEW_ITEMS (8) items (and 8 controls) shown
  TIMES (8) times: the batches of updates 0-7 are the 8 items
  (`single-exposure`, `times: 8`), then background batches only; probed as
  `exposed`. Recall needs these few exposures here; the single exposure of
  `exposed` gives recognition only.

Measures, on `exposed`: recognition (probe `recognition`, the paper's
2AFC: item i against control i by total loss, the share of trials the item
wins; 16 trials, so steps of 1/16); the recognition gap, the controls' mean
per-token loss minus the items' (nats), the graded form of the same
comparison; recall (`accuracy` on `items_recall`: the share of continuation
tokens, after a 4-token cue, predicted right from the true prefix),
reported, not claimed: one exposure does not give recall here (0.01-0.06
against 0.00-0.04 on the controls at update 1, chance 1/64), as in the
paper, where recall needs more exposures than recognition.

Signature, per seed (required share 0.9), on `exposed`:
- the exposure is recognized: 2AFC recognition reaches RECOGNIZED (0.75)
  within PEAK_WINDOW (10) updates of it, and the gap jumps from its value
  at update 0 to its peak over those updates by at least JUMP (0.4 nats);
- forgetting is fast, then slow: the gap falls per update from that peak
  to update SPLIT (20) at least FAST_SLOW (3) times as fast as it falls per
  update from SPLIT to the end;
- some of it lasts: the final gap exceeds the same strings' gap before the
  exposure by at least KEPT (0.02 nats). The gap before it is the two sets'
  own difference (-0.18 to +0.26 across seeds), hence the difference.

Signature, per seed, on `exposed-few` (recall: `accuracy` on
`items_recall`, chance 1/64; 8 items of 12 continuation tokens, so steps
of 1/96):
- the items are recalled: recall peaks at least RECALLED (0.1) within
  FEW_PEAK_WINDOW (12) updates of the last exposure (updates 8-20), and
  exceeds the controls' recall at that update by at least RECALL_ABOVE
  (0.08);
- recall falls fast, then slow: per update from that peak to update
  FEW_SPLIT (40) at least RECALL_FAST_SLOW (3) times as fast as from
  FEW_SPLIT to the end.

Measured on `exposed-few`, 16 seeds (quick / full; every seed holds at both
sizes, 16/16 and 16/16):
- recall 0.00-0.04 / 0.00-0.04 at update 0 and 0.01-0.06 / 0.00-0.04 at
  update 1 (after one exposure); peak 0.41-0.63 / 0.18-0.39, at updates
  9-13 / 10-20 (AdamW's moments carry the items on for a few updates past
  the last exposure), above the controls' recall there (0.00-0.04 /
  0.00-0.04; the controls' highest anywhere 0.07 / 0.06) by 0.39-0.61 /
  0.15-0.36; 0.02-0.13 / 0.03-0.13 at update 40; final 0.01-0.05 /
  0.00-0.03, back at the controls' level: recall, unlike the recognition
  gap, is not claimed to last;
- per update, peak to update 40: 0.0097-0.018 / 0.0049-0.013; update 40 to
  the end: 0.00013-0.0010 / 0.000022-0.00013 (positive in every seed);
  ratio 9.4-119 / 56-384; per decade of updates, too, recall falls steeper
  early (peak to 40: 0.47-0.85 / 0.24-0.79) than late (40 to the end:
  0.022-0.17 / 0.015-0.089), as in the paper, though the late fall is
  bounded by chance, which recall nears;
- the exposures cost the background (test loss 1.44-1.59 / 1.31-1.44
  before, highest 2.70-3.34 / 2.21-3.18 during them, final 1.37-1.50 /
  1.29-1.40).

Settings tried for recall that did not reach it (quick, 16 seeds, recall
peak after the exposure; controls reach up to 0.04-0.07 at any update):
with SGD lr 0.7 as in `exposed`, 16 items once 0.026-0.068; at lr 1.2
0.036-0.089, and some seeds diverged after; 16 items once in batches of 2
(`per_update: 2`) 0.010-0.068; 4 items once 0.06-0.25 (steps of 1/48), 1
item once 0.17-0.67 but the one control reaches 0.17; AdamW, 8 items once
0.04-0.09. Few exposures with SGD lr 0.7 gave recall that fell to chance
within about 10 updates (16 items 4 times: peak 0.06-0.16; 8 times:
0.06-0.19, 0.02-0.05 at update 20; 8 items 4 times 0.20-0.48, 0.00-0.04 by
update 24), and AdamW with 16 items 8 times peaked lower (0.14-0.28).

Measured on `exposed` (quick / full, the default seeds; ranges also on the
thresholds, `learnscope list few-shot-retention`):
- 2AFC recognition: 0.25-0.75 / 0.38-0.69 at update 0 (chance, 16
  trials), 0.88-1.00 / 0.75-1.00 at update 1, peak over updates 1-10
  1.00 / 0.81-1.00; 0.81-0.94 / 0.63-0.94 at update 20;
- the gap: -0.08 to 0.14 / -0.18 to 0.26 at update 0, peak 0.73-0.96 (at
  updates 2-3) / 0.52-0.95 (at update 1), jump 0.67-0.82 / 0.58-0.76;
  0.43-0.71 / 0.33-0.78 at update 20; final 0.15-0.47 / 0.034-0.48,
  retained above update 0's 0.037-0.34 / 0.043-0.28;
- per update, peak to update 20: 0.013-0.018 / 0.0055-0.015; update 20 to
  the end: 0.0017-0.0031 / 0.00021-0.00042; ratio 5.8-10.6 / 15-70 (longer
  full runs: more slow updates in the late window);
- every seed holds at both sizes (4/4, 10/10). Wall time, one thread:
  quick 12.6 s, full 1 min 46 s, before `exposed-few`; with it quick
  took 15.8 s against 12.2 s without it, timed alike.

What is not reproduced: the two rates of the recognition gap are per
update. Per decade of updates its drop is no steeper early than late (peak to update 20: 0.24-0.37
/ 0.08-0.21 nats per decade; 20 to the end: 0.22-0.40 / 0.12-0.24): the gap
falls about linearly in log time, where the paper's recall falls steeply over
its first 10 updates on a log axis too (recall on `exposed-few` does, above).
And recognition is not near perfect
at the end: final 2AFC recognition 0.56-0.88 / 0.44-0.88, within sampling
of chance in some seeds; the retained gap is what says the memory lasts.
The exposure costs the background too (test loss 1.44-1.53 / 1.31-1.42 before it,
2.19-3.25 / 1.40-1.54 right after; back by the end: 1.43-1.57 / 1.31-1.40).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from learnscope import registry
from learnscope.catalog.base import Arm, Figure, Phenomenon
from learnscope.results import ArmData, Bands, Threshold, Verdict
from learnscope.spec import Experiment

SEEDS_MEASURED = {"full": 10, "quick": 4}
RECOGNIZED = Threshold(0.75, "RECOGNIZED", "least peak 2AFC recognition of the items over the updates after their exposure",
                       "peak recognition, updates 1-10", full=(0.8125, 1.0), quick=(1.0, 1.0), seeds=SEEDS_MEASURED)
JUMP = Threshold(0.4, "JUMP", "least rise of the recognition gap from update 0 to its peak (nats per token)",
                 "gap jump", full=(0.577, 0.762), quick=(0.672, 0.820), seeds=SEEDS_MEASURED)
FAST_SLOW = Threshold(3.0, "FAST_SLOW", "least early / late drop of the recognition gap per update",
                      "early / late rate", full=(15.0, 70.5), quick=(5.82, 10.6), seeds=SEEDS_MEASURED)
KEPT = Threshold(0.02, "KEPT", "least final recognition gap (controls' minus items' mean loss, nats per token) "
                 "above the same strings' gap before the exposure", "retained gap",
                 full=(0.0434, 0.279), quick=(0.0370, 0.339), seeds=SEEDS_MEASURED)

RECALLED = Threshold(0.1, "RECALLED", "least peak recall (accuracy on items_recall) of the items seen 8 (TIMES) times "
                     "over the updates after the last exposure", "few: peak recall", full=(0.177, 0.385),
                     quick=(0.406, 0.625), seeds={"full": 16, "quick": 16})
RECALL_ABOVE = Threshold(0.08, "RECALL_ABOVE", "least excess of peak recall over the controls' recall at that update",
                         "few: recall above the controls' at the peak", full=(0.146, 0.365),
                         quick=(0.385, 0.615), seeds={"full": 16, "quick": 16})
RECALL_FAST_SLOW = Threshold(3.0, "RECALL_FAST_SLOW", "least early / late drop of recall per update",
                             "few: early / late recall rate", full=(56.0, 384.0),
                             quick=(9.35, 118.7), seeds={"full": 16, "quick": 16})

LR = 0.7  # `exposed`'s SGD: sets the exposure's strength; at 1.0 one quick seed diverged, at 0.5 the jump was weaker
PEAK_WINDOW = 10  # updates after the exposure in which the gap peaks
SPLIT = 20  # the update that ends the early window and starts the late one
ITEMS = 16
BACKGROUND, EXPOSED, EXPOSED_FEW = "background", "exposed", "exposed-few"
FEW_ITEMS = 8  # `exposed-few`'s items (and controls)
TIMES = 8  # `exposed-few`'s exposures: the items are the batches of updates 0..TIMES-1
FEW_PEAK_WINDOW = 12  # updates after the last exposure in which recall peaks
FEW_SPLIT = 40  # `exposed-few`'s update that ends the early window of recall and starts the late one
REC, ITEM_LOSS, CONTROL_LOSS = "recognition/items", "loss@items/items", "loss@items/controls"
RECALL, RECALL_CONTROL = "accuracy/items_recall", "accuracy/controls_recall"


def task(items: int = ITEMS) -> dict:
    return {"name": "few-shot-items", "vocab": 64, "length": 16, "branching": 4, "train_sequences": 4096,
            "test_sequences": 256, "items": items, "cue": 4}


MODEL = {"name": "transformer", "layers": 2, "d_model": 64, "heads": 4, "d_mlp": 256, "layernorm": True}


def background_experiment(quick: bool) -> Experiment:
    return Experiment.model_validate({
        "task": task(), "model": MODEL,
        "recipe": {"optimizer": "adamw", "lr": 3e-3, "batch_size": 16, "steps": 100 if quick else 600,
                   "probe_every": 100, "probe_log_points": 0, "checkpoint_every": None},
        "probes": [{"name": "loss", "splits": ["test"]}],
        "seeds": list(range(4 if quick else 10)),
    })


def exposed_experiment(quick: bool) -> Experiment:
    steps = 120 if quick else 1000
    return Experiment.model_validate({
        "task": task(), "model": MODEL,
        "recipe": {"optimizer": "sgd", "lr": LR, "momentum": 0.0, "batch_size": 16, "steps": steps,
                   "probe_every": SPLIT, "probe_log_points": 16, "checkpoint_every": None},
        "interventions": [{"name": "single-exposure", "split": "items", "at": 0}],
        "probes": [{"name": "loss", "splits": ["test"], "max_examples": 64},
                   {"name": "loss", "splits": ["items", "controls"], "label": "items"}, "recognition",
                   {"name": "accuracy", "splits": ["items_recall", "controls_recall"]}],
        "seeds": list(range(4 if quick else 10)),
    })


def exposed_few_experiment(quick: bool) -> Experiment:
    steps = 120 if quick else 1000
    return Experiment.model_validate({
        "task": task(FEW_ITEMS), "model": MODEL,
        "recipe": {"optimizer": "adamw", "lr": 3e-3, "batch_size": 16, "steps": steps,
                   "probe_every": 20, "probe_log_points": 16, "checkpoint_every": None},
        "interventions": [{"name": "single-exposure", "split": "items", "at": 0, "times": TIMES}],
        "probes": [{"name": "loss", "splits": ["test"], "max_examples": 64},
                   {"name": "accuracy", "splits": ["items_recall", "controls_recall"]}],
        "seeds": list(range(4 if quick else 10)),
    })


def value_at(steps: np.ndarray, values: np.ndarray, step: int) -> np.ndarray:
    """Per seed, the value probed at `step` (which the schedule probes)."""
    return values[:, int(np.flatnonzero(steps == step)[0])]


@dataclass(frozen=True)
class Falls:
    """A memory curve's peak in a window and how fast it falls from there, per seed."""

    peak: np.ndarray
    peak_index: np.ndarray
    peak_step: np.ndarray
    at_split: np.ndarray
    final: np.ndarray
    early: np.ndarray  # fall per update, peak to the split
    late: np.ndarray  # fall per update, split to the end
    ratio: np.ndarray  # early / late (inf where nothing falls late)
    early_decade: np.ndarray  # fall per decade of updates, peak to the split
    late_decade: np.ndarray


def falls(steps: np.ndarray, values: np.ndarray, window: np.ndarray, split: int) -> Falls:
    """`values` [S, T] peaks within the probes `window` (a mask over `steps`), then is read at `split`
    and at the end."""
    last = int(steps[-1])
    peak_index = np.flatnonzero(window)[np.nanargmax(values[:, window], axis=1)]
    peak, peak_step = values[np.arange(len(values)), peak_index], steps[peak_index]
    at_split, final = value_at(steps, values, split), values[:, -1]
    early = (peak - at_split) / (split - peak_step)
    late = (at_split - final) / (last - split)
    ratio = np.where(late > 0, early / np.where(late > 0, late, 1), np.inf)
    return Falls(peak, peak_index, peak_step, at_split, final, early, late, ratio,
                 (peak - at_split) / np.log10(split / peak_step), (at_split - final) / np.log10(last / split))


@registry.phenomena.register("few-shot-retention")
class FewShotRetention(Phenomenon):
    summary = ("items a tiny LM sees once are recognized right after, then forgotten fast over the first updates "
               "and slowly after")
    source = "Recognition, recall, and retention of few-shot memories in large language models"
    headline = REC
    required_share = 0.9
    thresholds = (RECOGNIZED, JUMP, FAST_SLOW, KEPT, RECALLED, RECALL_ABOVE, RECALL_FAST_SLOW)

    def arms(self, quick: bool) -> list[Arm]:
        return [Arm(BACKGROUND, background_experiment(quick)),
                Arm(EXPOSED, exposed_experiment(quick), starts_from=BACKGROUND),
                Arm(EXPOSED_FEW, exposed_few_experiment(quick), starts_from=BACKGROUND)]

    @staticmethod
    def gap(arm: ArmData) -> tuple[np.ndarray, np.ndarray]:
        steps, items = arm.curve(ITEM_LOSS)
        _, controls = arm.curve(CONTROL_LOSS)
        return steps, controls - items

    def check(self, arms: dict[str, ArmData]) -> Verdict:
        exposed = arms[EXPOSED]
        steps, gap = self.gap(exposed)
        _, rec = exposed.curve(REC)
        _, recall = exposed.curve(RECALL)
        _, recall_control = exposed.curve(RECALL_CONTROL)
        window = (steps >= 1) & (steps <= PEAK_WINDOW)
        fall = falls(steps, gap, window, SPLIT)
        peak, peak_step, at_split, final = fall.peak, fall.peak_step, fall.at_split, fall.final
        early, late, ratio = fall.early, fall.late, fall.ratio
        # the same strings' gap before any exposure: what the two sets differ by without it
        retained = final - value_at(steps, gap, 0)

        sig = self.signature(exposed.seeds)
        sig.measure("recognition at update 0", value_at(steps, rec, 0))
        sig.measure("recognition at update 1", value_at(steps, rec, 1))
        sig.measure(f"recognition at update {SPLIT}", value_at(steps, rec, SPLIT))
        sig.measure("final recognition", rec[:, -1])
        sig.measure("gap at update 0", value_at(steps, gap, 0))
        sig.measure("peak gap", peak)
        sig.measure("peak update", peak_step)
        sig.measure(f"gap at update {SPLIT}", at_split)
        sig.measure("final gap", final)
        sig.measure("early rate", early)
        sig.measure("late rate", late)
        sig.measure("early / late rate", ratio)
        sig.measure(f"drop per decade, peak to {SPLIT}", fall.early_decade)
        sig.measure(f"drop per decade, {SPLIT} to end", fall.late_decade)
        sig.measure("recall at update 1", value_at(steps, recall, 1))
        sig.measure("control recall at update 1", value_at(steps, recall_control, 1))
        sig.measure("test loss at update 0", value_at(*exposed.curve("loss/test"), 0))
        sig.measure("test loss at update 1", value_at(*exposed.curve("loss/test"), 1))
        sig.measure("final test loss", exposed.final("loss/test"))
        peak_rec = np.nanmax(rec[:, window], axis=1)
        jump = peak - value_at(steps, gap, 0)
        sig.measure(f"peak recognition, updates 1-{PEAK_WINDOW}", peak_rec)
        sig.measure("gap jump", jump)
        sig.claim(f"recognition reaches at least {RECOGNIZED:g} within {PEAK_WINDOW} updates of the exposure",
                  peak_rec >= RECOGNIZED, "peak recognition {0:.3f}", peak_rec)
        sig.claim(f"the gap jumps by at least {JUMP:g} with the exposure", jump >= JUMP,
                  "gap {0:.3f} before, peak {1:.3f}", value_at(steps, gap, 0), peak)
        sig.claim(f"the gap falls at least {FAST_SLOW:g}x faster per update up to update {SPLIT} than after",
                  ratio >= FAST_SLOW, "early rate {0:.4f}, late rate {1:.5f} per update", early, late)
        sig.measure("retained gap", retained)
        sig.claim(f"the final gap exceeds the gap before the exposure by at least {KEPT:g}", retained >= KEPT,
                  "final gap {0:.3f}, {1:.3f} before the exposure", final, value_at(steps, gap, 0))
        self.check_recall(arms[EXPOSED_FEW], sig)
        return sig.verdict()

    @staticmethod
    def check_recall(arm: ArmData, sig) -> None:
        """Recall of the items seen TIMES times (`exposed-few`): it peaks after the
        exposures, then falls fast up to FEW_SPLIT and slowly after."""
        steps, recall = arm.curve(RECALL)
        _, control = arm.curve(RECALL_CONTROL)
        window = (steps >= TIMES) & (steps <= TIMES + FEW_PEAK_WINDOW)
        fall = falls(steps, recall, window, FEW_SPLIT)
        rows, peak_index = np.arange(len(recall)), fall.peak_index
        peak, peak_step, at_split, final = fall.peak, fall.peak_step, fall.at_split, fall.final
        early, late, ratio = fall.early, fall.late, fall.ratio
        above = peak - control[rows, peak_index]
        test_steps, test = arm.curve("loss/test")
        sig.measure("few: recall at update 0", value_at(steps, recall, 0))
        sig.measure("few: recall at update 1", value_at(steps, recall, 1))
        sig.measure("few: peak recall", peak)
        sig.measure("few: peak recall update", peak_step)
        sig.measure("few: control recall at the peak update", control[rows, peak_index])
        sig.measure("few: recall above the controls' at the peak", above)
        sig.measure("few: most control recall", np.nanmax(control, axis=1))
        sig.measure(f"few: recall at update {FEW_SPLIT}", at_split)
        sig.measure("few: final recall", final)
        sig.measure("few: early recall rate", early)
        sig.measure("few: late recall rate", late)
        sig.measure("few: early / late recall rate", ratio)
        sig.measure(f"few: drop per decade, peak to {FEW_SPLIT}", fall.early_decade)
        sig.measure(f"few: drop per decade, {FEW_SPLIT} to end", fall.late_decade)
        sig.measure("few: test loss at update 0", value_at(test_steps, test, 0))
        sig.measure("few: most test loss", np.nanmax(test, axis=1))
        sig.measure("few: final test loss", test[:, -1])
        sig.claim(f"recall of items seen {TIMES} times reaches at least {RECALLED:g} within {FEW_PEAK_WINDOW} "
                  f"updates of the last exposure", peak >= RECALLED, "peak recall {0:.3f} at update {1:g}",
                  peak, peak_step)
        sig.claim(f"at its peak, recall of the items exceeds the controls' by at least {RECALL_ABOVE:g}",
                  above >= RECALL_ABOVE, "recall {0:.3f}, controls {1:.3f}", peak, control[rows, peak_index])
        sig.claim(f"recall falls at least {RECALL_FAST_SLOW:g}x faster per update up to update {FEW_SPLIT} "
                  f"than after", ratio >= RECALL_FAST_SLOW, "early rate {0:.4f}, late rate {1:.5f} per update",
                  early, late)

    def figures(self, arms: dict[str, ArmData]) -> list[Figure]:
        steps, gap = self.gap(arms[EXPOSED])
        _, rec = arms[EXPOSED].curve(REC)
        return [Bands("Recognition of items seen once at update 0 as training on the background corpus goes on: "
                      "2AFC recognition against matched controls (0.5 chance) and the gap between the controls' "
                      "and the items' mean loss (nats per token).", "retention of items seen once",
                      "update", "recognition / gap", [("2AFC recognition", steps, rec), ("loss gap", steps, gap)]),
                Bands(f"Recall of items seen {TIMES} times (updates 0-{TIMES - 1}) as training on the background "
                      "corpus goes on: the share of continuation tokens predicted right after the cue, for the "
                      "items and their never-trained controls (chance 1/64).", f"recall of items seen {TIMES} times",
                      "update", "recall", [("items", *arms[EXPOSED_FEW].curve(RECALL)),
                                           ("controls", *arms[EXPOSED_FEW].curve(RECALL_CONTROL))])]
