"""Learning-rate sensitivity: swept over orders of magnitude of learning
rate, a tiny transformer's final loss rises steeply past its best rate;
with qk-layernorm the curve stays flat to a rate several times higher, so
the LR sensitivity falls, at each width.

Wortsman et al., "Small-scale proxies for large-scale Transformer training
instabilities", summarize an LR-vs-loss curve by its LR sensitivity
(learnscope.sensitivity): the mean over the swept rates of
min(loss(eta), loss at init) - the best loss. Attention-logit growth
(`attention-logit-growth`) makes small models sensitive at high rates, and
qk-layernorm removes it; z-loss, against the output logits' divergence to
very negative values, is the second fix they study.

Setting: `attention-logit-growth`'s task (a deterministic Markov chain, 64
tokens, `<bos>` and 16 tokens; test-loss floor 0.26); a 2-layer
pre-layernorm transformer, heads of dimension 8, MLP 4 x d_model, at two
widths, d_model 16 (2 heads) and 32 (4 heads); AdamW, betas (0.9, 0.95), no
weight decay, batches of 8, linear warmup over the first 10% of updates,
then cosine decay to 0 (the source's schedule); the loss is the test loss.

Arms, same seeds and data, one per width x model x rate: `MODEL-dWIDTH-lrETA`
for MODEL in `plain`, `qk-layernorm` (`model.qk_layernorm`) and `z-loss`
(coefficient 1e-4, PaLM's), and ETA in 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1
(half-decades). Each is one run of the sweep; the same curves come from a
`learnscope sweep` over `recipe.lr`, whose `show` prints the sensitivity
from the store (learnscope.sweep.Sweep.lr_sensitivity).

Keeps diverged seeds: a seed whose loss turned NaN counts its initial
loss, as the definition caps every run there.

Signature, per seed (required share 0.9), at each width:
- qk-layernorm lowers the LR sensitivity: plain's minus qk-layernorm's is
  at least LOWER (0.03 nats);
- both reach the same best loss: qk-layernorm's best test loss is within
  SAME_BEST (0.02) of plain's.
Reported, not claimed: z-loss's sensitivity against plain's; the final log Z
at lr 1.

Measured (16 seeds at each size; quick 200 updates, full 600; the threshold
measures take the worse width per seed):
- LR sensitivity (nats), plain / qk-layernorm / z-loss: quick d16
  0.30-0.53 / 0.08-0.36 / 0.26-0.51, d32 0.27-0.63 / 0.06-0.47 /
  0.25-0.65; full d16 0.063-0.47 / 0.005-0.066 / 0.14-0.27, d32
  0.043-0.43 / 0.001-0.053 / 0.10-0.33. At full size qk-layernorm's curve is
  flat to lr 1 (median final loss 0.27-0.29 there, against 1.1-1.4 plain);
- plain minus qk-layernorm, the worse width: quick -0.028-0.35, full
  -0.010-0.21; one seed of 16 at each size falls below LOWER (quick seed 8
  at d32, 0.45 against 0.47; full seed 12 at d32, where plain too stayed
  near its best loss at lr 1: 0.043 against 0.053); the rest are at least
  0.05 (d16 quick 0.13-0.35, full 0.051-0.46);
- best test loss, any model: 0.259-0.283 (floor 0.26); the gap
  qk-layernorm - plain at most 0.0064 quick, 0.0012 full; the best rate is
  0.01-0.3 (mostly 0.03-0.1), for every model: on a flat floor the best
  point is noise;
- z-loss does not lower the sensitivity here: plain minus z-loss is
  -0.22-0.18 quick, -0.12-0.25 full (means 0.00-0.02). It does hold the
  output logits' normalizer down, log Z at lr 1 8-21 against 12-145
  (full), but the instability it answers, log Z drifting to very negative
  values late in training (the source's models ran 1e5 steps in bfloat16),
  does not arise in float32 in 600 updates: log Z grows positive, with the
  confident predictions a deterministic chain rewards. z-loss at 1e-3 and
  1e-2 raised the sensitivity (4 seeds, 300 updates, lr 0.3-3).

Not used (4 seeds, 300 updates, d_model 32): a constant rate without
warmup leaves every model sensitive (plain 0.73-0.93, qk-layernorm
0.59-0.64; everything diverges at lr 1); the 4-successor chain gives
qk-layernorm 0.57-0.68 against plain 1.01-1.06, z-loss 0.97-1.10.
"""

from __future__ import annotations

import numpy as np

from learnscope import registry
from learnscope.catalog.base import Arm, Figure, Phenomenon
from learnscope.results import ArmData, Bands, Threshold, Verdict
from learnscope.sensitivity import lr_sensitivity
from learnscope.spec import Experiment

SEEDS_MEASURED = {"full": 16, "quick": 16}
LOWER = Threshold(0.03, "LOWER", "least LR sensitivity of the plain model above its qk-layernorm twin's, at each "
                  "width", "sensitivity drop", full=(-0.0100, 0.2134), quick=(-0.0277, 0.3454), seeds=SEEDS_MEASURED)
SAME_BEST = Threshold(0.02, "SAME_BEST", "most |best test loss of qk-layernorm - plain's| over the rates, at each "
                      "width", "best loss gap", full=(0.0002, 0.0012), quick=(0.0006, 0.0064), seeds=SEEDS_MEASURED)

LOSS = "loss/test"
LOG_Z = "output_log_z/mean"
WIDTHS = (16, 32)
HEAD_DIM = 8
RATES = (3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0)
PLAIN, QK, Z = "plain", "qk-layernorm", "z-loss"
MODELS = (PLAIN, QK, Z)
Z_COEFFICIENT = 1e-4


def arm_name(model: str, width: int, lr: float) -> str:
    return f"{model}-d{width}-lr{lr:g}"


def sweep_experiment(quick: bool, model: str, width: int, lr: float) -> Experiment:
    steps = 200 if quick else 600
    return Experiment.model_validate({
        "task": {"name": "markov-text", "vocab": 64, "length": 16, "branching": 1, "train_sequences": 4096,
                 "test_sequences": 256},
        "model": {"name": "transformer", "layers": 2, "d_model": width, "heads": width // HEAD_DIM,
                  "d_mlp": 4 * width, "layernorm": True, "qk_layernorm": model == QK},
        "recipe": {"optimizer": "adamw", "lr": lr, "weight_decay": 0.0, "betas": (0.9, 0.95), "batch_size": 8,
                   "steps": steps, "schedule": "warmup_cosine", "warmup_steps": steps // 10,
                   "probe_every": steps, "probe_log_points": 0, "checkpoint_every": None},
        "interventions": [{"name": "z-loss", "coefficient": Z_COEFFICIENT}] if model == Z else [],
        "probes": [{"name": "loss", "splits": ["test"], "max_examples": 256},
                   {"name": "output_log_z", "split": "test", "max_examples": 256}],
        "seeds": list(range(4 if quick else 8)),
    })


@registry.phenomena.register("lr-sensitivity")
class LrSensitivity(Phenomenon):
    summary = ("swept over orders of magnitude of learning rate, a tiny transformer's final loss rises steeply past "
               "its best rate; qk-layernorm flattens the curve and lowers the LR sensitivity at each width")
    source = "Small-scale proxies for large-scale Transformer training instabilities"
    headline = LOSS
    required_share = 0.9
    keeps_diverged = True
    thresholds = (LOWER, SAME_BEST)
    # the rates are the sweep the measure averages over; one global rate would leave no curve
    fixed = ("recipe.lr", "recipe.schedule", "recipe.steps", "recipe.warmup_steps", "model.d_model", "model.heads",
             "model.qk_layernorm")

    def arms(self, quick: bool) -> list[Arm]:
        return [Arm(arm_name(model, width, lr), sweep_experiment(quick, model, width, lr))
                for width in WIDTHS for model in MODELS for lr in RATES]

    def curves(self, arms: dict[str, ArmData], model: str, width: int) -> tuple[np.ndarray, np.ndarray]:
        """(final test losses [rates, S], NaN where a seed diverged; losses at init [rates, S])."""
        runs = [arms[arm_name(model, width, lr)] for lr in RATES]
        return (np.stack([run.final_or_nan(LOSS) for run in runs]),
                np.stack([run.curve(LOSS)[1][:, 0] for run in runs]))

    def check(self, arms: dict[str, ArmData]) -> Verdict:
        sig = self.signature(arms[arm_name(PLAIN, WIDTHS[0], RATES[0])].seeds)
        drops, gaps = [], []
        for width in WIDTHS:
            sensitivity, best = {}, {}
            for model in MODELS:
                final, initial = self.curves(arms, model, width)
                sensitivity[model] = sig.measure(f"sensitivity {model} d{width}", lr_sensitivity(final, initial))
                best[model] = sig.measure(f"best loss {model} d{width}", np.nanmin(final, axis=0))
                sig.measure(f"best rate {model} d{width}", np.asarray(RATES)[np.nanargmin(final, axis=0)])
                sig.measure(f"final log Z {model} d{width} lr{RATES[-1]:g}",
                            arms[arm_name(model, width, RATES[-1])].final(LOG_Z))
            drop = sig.measure(f"sensitivity drop d{width}", sensitivity[PLAIN] - sensitivity[QK])
            sig.measure(f"z-loss sensitivity drop d{width}", sensitivity[PLAIN] - sensitivity[Z])
            gap = sig.measure(f"best loss gap d{width}", np.abs(best[QK] - best[PLAIN]))
            drops.append(drop)
            gaps.append(gap)
            sig.claim(f"at d_model {width} qk-layernorm lowers the LR sensitivity by at least {LOWER:g}",
                      drop >= LOWER, "d_model {0}: sensitivity {1:.3f} plain, {2:.3f} with qk-layernorm",
                      np.full(drop.shape, width), sensitivity[PLAIN], sensitivity[QK])
            sig.claim(f"at d_model {width} both reach a best test loss within {SAME_BEST:g} of each other",
                      gap <= SAME_BEST, "d_model {0}: best test loss {1:.3f} plain, {2:.3f} with qk-layernorm",
                      np.full(gap.shape, width), best[PLAIN], best[QK])
        sig.measure("sensitivity drop", np.min(drops, axis=0))  # the thresholds' measures: the worse width
        sig.measure("best loss gap", np.max(gaps, axis=0))
        return sig.verdict()

    def figures(self, arms: dict[str, ArmData]) -> list[Figure]:
        x = np.log10(np.asarray(RATES))
        figures: list[Figure] = []
        for width in WIDTHS:
            lines = []
            for model in MODELS:
                final, initial = self.curves(arms, model, width)
                # a diverged seed is drawn where the measure counts it: at its initial loss
                lines.append((model, x, np.where(np.isfinite(final), np.minimum(final, initial), initial).T))
            figures.append(Bands(f"Final test loss against the learning rate at d_model {width}, each run's loss "
                                 "capped at its loss at initialization as the LR sensitivity counts it.",
                                 f"LR-loss curves, d_model {width}", "log10 learning rate", "final test loss",
                                 lines))
        return figures
