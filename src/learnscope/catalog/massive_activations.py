"""Massive activations: during training a tiny language model's residual
stream grows a few activations orders of magnitude above the median one,
at one or two fixed feature dimensions and on the first token.

"Hidden Dynamics of Massive Activations in Transformer Training" follows
their emergence over the Pythia checkpoints; the measure is Sun et al.'s
("Massive Activations in Large Language Models", probe
`massive_activations`): per example, the top-1 and the median of the
magnitudes |h| of a block's output (site `resid.{l}`) over all its
positions and dimensions, each averaged over the examples, and their ratio;
`massive_activations/ratio` is the largest over layers. Sun et al. find
massive activations at a few fixed dimensions, input-agnostic, on the
starting token, and call one massive above 100 and about 1000x the median;
here, with 32 dimensions, the top-1 reaches 98-283 and the ratio 218-988
by 3000 steps (44-78 and 74-210 by 1000).

Setting: `markov-text` with branching 1 (a deterministic chain), 64
tokens, `<bos>` and 16 tokens, as `attention-sink` uses; a 2-layer
pre-layernorm transformer (d_model 32, 4 heads, MLP 128), AdamW lr 5e-3,
weight decay 0.1, betas (0.9, 0.98), batches of 8. The test loss is at its
floor (ln 64 / 16 = 0.26) by about 600 steps, and the activations keep
growing after it. The probe reads the first 64 test sequences every 100
steps.

One arm, `wd-0.1` (quick: 4 seeds, 1000 steps; full: 10 seeds, 3000 steps).

Signature, per seed (required share 0.9), on the largest ratio over layers:
- it starts at most INIT_MAX (10): at initialization the largest magnitude
  is a few times the median, as for Gaussian values (512 of them give 4.8);
- it ends at least RISE (8) times its value at step 0, and at least LEVEL
  (40);
- the largest activation sits at a few fixed feature dimensions: in every
  layer, the dimension that holds it (the most frequent over the examples)
  takes at most FEW (2) values over the last WINDOW (5) probes, and at the
  final probe it holds it in at least DIM_SHARE (0.9) of the examples;
- on the first token (`<bos>`): in every layer, the position that holds it
  at the final probe is 0.

Measured (quick 4 seeds, 1000 steps / full 10 seeds, 3000 steps; the
quick seeds train as the full ones do, so their first 1000 steps agree):
- ratio at step 0: 4.60-5.96 / 4.60-5.96;
- final ratio: 74-210 / 218-988; final over step 0: 16-38 / 47-181; first
  probe at >= LEVEL: steps 400-600 / 400-800; final top-1 magnitude
  (largest over layers): 44-78 / 98-283, against medians of 0.35-0.64 /
  0.27-0.68;
- dimensions over the last 5 probes: 1 in every seed and layer; the
  dimension stays the same over the last 7-10 of 11 / 21-30 of 31 probes;
  the share of examples whose top-1 sits at it, final, least over layers:
  1.0 / 1.0 (the `<bos>` stream is the same in every example); the
  position: 0 in every seed and layer. Both layers share the dimension; in
  one full seed (5) layer 0 loses its massive activation late (final
  ratio 9.2) while layer 1 keeps it (307);
- final test loss 0.261-0.266 / 0.261-0.263.
More seeds: quick, seeds 10-37: 28 of 28 hold (final ratio 51-212, rise
10.1-38, the slowest seeds 10, 11, 12 and 14 at 10.1-11.3); full, seeds
10-19: 10 of 10 (final ratio 240-816, rise 41-173). RISE and LEVEL sit
below the slowest of those 32 quick seeds (rise 10.1, ratio 51). Some seeds grow two massive
dimensions of like size, and which one holds the top-1 alternates (seed
19 between dimensions 27 and 0, seed 10 at full size between 0 and 10):
hence "at most 2 dimensions", Sun et al.'s "a few". At lr 7e-3 the ratio
grows faster but drops abruptly at times (seed 12, quick: from 46 to 11
at the last probe; 15 of 16 seeds held), so lr 5e-3.

Weight decay (separate runs of 4 seeds, 3000 steps, not an arm: a second
arm would double the quick budget): without it the top-1 grows larger
(330-955 against 98-283) but the whole stream grows with it (median of
layer 1 3.8-4.4 against 0.40-0.49), and the final ratio is 2-4x lower in
every seed (96-425 against 218-988; at 1000 steps 43-126 against 74-210);
the dimension and the first position are the same. Weight decay keeps the
typical activation small, which is what makes the few large ones massive.
With weight decay 0.3 (seeds 10-19, 3000 steps) the ratio ends higher
still (286-700) with smaller magnitudes (top-1 27-68).
"""

from __future__ import annotations

import numpy as np

from learnscope import registry
from learnscope.catalog.base import Arm, Figure, Phenomenon
from learnscope.results import ArmData, Bands, Threshold, Verdict, first_step
from learnscope.spec import Experiment

SEEDS_MEASURED = {"full": 10, "quick": 4}
INIT_MAX = Threshold(10.0, "INIT_MAX", "most largest-over-median ratio at step 0", "ratio at step 0",
                     full=(4.598, 5.958), quick=(4.598, 5.958), seeds=SEEDS_MEASURED)
RISE = Threshold(8.0, "RISE", "least final ratio / ratio at step 0", "rise",
                 full=(46.85, 181.3), quick=(16.02, 38.49), seeds=SEEDS_MEASURED)
LEVEL = Threshold(40.0, "LEVEL", "least final largest-over-median ratio", "final ratio",
                  full=(217.6, 987.7), quick=(74.39, 209.7), seeds=SEEDS_MEASURED)
WINDOW = 5  # the last probes over which the dimensions of the largest activation are counted
FEW = Threshold(2, "FEW", f"most distinct dimensions that hold the largest activation over the last {WINDOW} probes "
                "(most over layers)", "dimensions at the last probes", full=(1, 1), quick=(1, 1), seeds=SEEDS_MEASURED)
DIM_SHARE = Threshold(0.9, "DIM_SHARE", "least final share of examples whose largest activation sits at that "
                      "dimension (least over layers)", "dimension share", full=(1.0, 1.0), quick=(1.0, 1.0),
                      seeds=SEEDS_MEASURED)

FAMILY = "massive_activations"
RATIO = f"{FAMILY}/ratio"
LAYERS = 2
MAIN = "wd-0.1"
PROBED = 64  # test sequences the probe reads


def massive_experiment(quick: bool) -> Experiment:
    return Experiment.model_validate({
        "task": {"name": "markov-text", "vocab": 64, "length": 16, "branching": 1, "train_sequences": 4096,
                 "test_sequences": 256},
        "model": {"name": "transformer", "layers": LAYERS, "d_model": 32, "heads": 4, "d_mlp": 128,
                  "layernorm": True},
        "recipe": {"optimizer": "adamw", "lr": 5e-3, "weight_decay": 0.1, "batch_size": 8,
                   "steps": 1000 if quick else 3000, "probe_every": 100, "probe_log_points": 0,
                   "checkpoint_every": None},
        "probes": [{"name": "loss", "splits": ["test"], "max_examples": 256},
                   {"name": FAMILY, "split": "test", "max_examples": PROBED}],
        "seeds": list(range(4 if quick else 10)),
    })


def distinct_per_row(values: np.ndarray) -> np.ndarray:
    """Per row of values [S, T], how many distinct values it holds."""
    ordered = np.sort(values, axis=1)
    return 1 + (np.diff(ordered, axis=1) != 0).sum(1)


def trailing_same(values: np.ndarray) -> np.ndarray:
    """Per row of values [S, T], how many of the last entries equal the last one."""
    same = values == values[:, -1:]
    # the first entry from the end that differs; all equal: the whole row
    differs = ~same[:, ::-1]
    return np.where(differs.any(1), differs.argmax(1), values.shape[1])


@registry.phenomena.register("massive-activations")
class MassiveActivations(Phenomenon):
    summary = ("a tiny LM's residual stream grows a few activations 100x above the median during training, at one "
               "or two fixed dimensions, on the first token")
    source = "Hidden Dynamics of Massive Activations in Transformer Training"
    headline = RATIO
    required_share = 0.9
    thresholds = (INIT_MAX, RISE, LEVEL, FEW, DIM_SHARE)
    comparison = {RATIO: "largest activation magnitude over the median, largest over layers"}

    def arms(self, quick: bool) -> list[Arm]:
        return [Arm(MAIN, massive_experiment(quick))]

    def check(self, arms: dict[str, ArmData]) -> Verdict:
        main = arms[MAIN]
        steps, ratio = main.curve(RATIO)
        start, final = ratio[:, 0], ratio[:, -1]
        rise = final / start
        dims = [main.curve(f"{FAMILY}/dim.{i}")[1] for i in range(LAYERS)]  # [S, T] per layer
        stable = np.min([trailing_same(d) for d in dims], axis=0)
        few = np.max([distinct_per_row(d[:, -WINDOW:]) for d in dims], axis=0)
        share = np.min([main.final(f"{FAMILY}/dim_share.{i}") for i in range(LAYERS)], axis=0)
        positions = np.stack([main.final(f"{FAMILY}/position.{i}") for i in range(LAYERS)], 1)  # [S, L]

        sig = self.signature(main.seeds)
        sig.measure("ratio at step 0", start)
        sig.measure("final ratio", final)
        sig.measure("rise", rise)
        sig.measure("massive step", first_step(steps, ratio, LEVEL))
        sig.measure("final top", np.max([main.final(f"{FAMILY}/top.{i}") for i in range(LAYERS)], axis=0))
        for i in range(LAYERS):
            sig.measure(f"final ratio layer {i}", main.final(f"{FAMILY}/ratio.{i}"))
            sig.measure(f"final top layer {i}", main.final(f"{FAMILY}/top.{i}"))
            sig.measure(f"final median layer {i}", main.final(f"{FAMILY}/median.{i}"))
            sig.measure(f"dimension layer {i}", main.final(f"{FAMILY}/dim.{i}"))
        sig.measure("stable probes", stable)
        sig.measure("dimensions at the last probes", few)
        sig.measure("dimension share", share)
        sig.measure("final test loss", main.final("loss/test"))
        sig.claim(f"the largest-over-median ratio starts at most {INIT_MAX:g}", start <= INIT_MAX,
                  "ratio at step 0 is {0:.2f}", start)
        sig.claim(f"the ratio ends at least {RISE:g} x its value at step 0", rise >= RISE,
                  "ratio {0:.1f} at the end, {1:.2f} at step 0", final, start)
        sig.claim(f"the ratio ends at least {LEVEL:g}", final >= LEVEL, "final ratio {0:.1f}", final)
        sig.claim(f"in every layer the largest activation sits at no more than {FEW:g} dimensions over the last "
                  f"{WINDOW} probes", few <= FEW, "{0:.0f} dimensions over the last probes", few)
        sig.claim(f"in every layer that dimension holds the largest activation in at least {DIM_SHARE:g} of the "
                  "examples", share >= DIM_SHARE, "share {0:.2f}", share)
        sig.claim("in every layer the largest activation sits on the first token", (positions == 0).all(1),
                  lambda s: f"positions by layer {positions[s].astype(int).tolist()}")
        return sig.verdict()

    def figures(self, arms: dict[str, ArmData]) -> list[Figure]:
        main = arms[MAIN]
        lines = [(f"layer {i}", *main.curve(f"{FAMILY}/ratio.{i}")) for i in range(LAYERS)]
        return [Bands(
            "Largest activation magnitude over the median (Sun et al.'s top-1 / median) in each layer's residual "
            "stream over training; 512 Gaussian values give about 5.",
            "massive activations over training", "step", "top-1 / median", lines)]
