"""Attention sink: during training a tiny language model's heads come to dump
their attention on the first token, and weight decay makes more of it.

Gu et al., "When Attention Sink Emerges in Language Models: An Empirical
View": the sink emerges during pre-training, after effective optimization;
it sits on the first token; it stores attention a head has no use for (a
key bias); and larger weight decay gives more sink, up to a point, past
which optimization suffers and the sink fades. Sink^eps (probe
`attention_sink`, as the authors' code computes it): alpha_k, the mean
attention key k receives from the queries at and after it; Sink^0.3 the
share of (example, layer, head) with alpha_0 > 0.3; "mass" the mean alpha.
Even attention over T = 16 positions gives alpha_0 = H_16 / 16 = 0.21, so
Sink^0.3 starts at 0.

Setting: `markov-text` with branching 1 (a deterministic chain: the current
token alone predicts the next, so no head has anything to read), 64 tokens,
`<bos>` and 16 tokens; a 2-layer transformer (d_model 32, 4 heads, MLP 128,
pre-layernorm), AdamW lr 3e-3, betas (0.9, 0.98). By about 400 steps
the test loss is within 0.01 of its floor (every position predictable but the first token
after `<bos>`, drawn uniformly: ln 64 / 16 = 0.26), and training goes on
growing margins; the sink forms then, in layer 1 (its heads together;
layer 0 mostly stays near even).

Arms, same seeds and data (full size: 10 seeds, 3000 steps, batches of 16;
quick: 4 seeds, 2400 steps, batches of 8):
- `wd-0.1`: weight decay 0.1 (the paper's default);
- `wd-0`: no weight decay.
Both probe the sink at key position 0 and, as a second `attention_sink`
entry labelled `k1` (`attention_sink@k1/rate`, `/mass`), at position 1.

Signature, per seed (required share 0.9):
- Sink^0.3 of `wd-0.1` starts at most NEAR_ZERO (0.05) and ends at least
  SINK_LEVEL (0.4);
- the first position takes the mass: the final mass at position 0 is at
  least FIRST_SHARE (3) times the mass at position 1, and Sink^0.3 at
  position 1 is at most NEAR_ZERO;
- weight decay makes more sink: the final mass of `wd-0.1` exceeds that of
  `wd-0` by at least WD_GAIN (0.03).

Measured (quick 4 seeds / full 10 seeds):
- Sink^0.3 at step 0: 0-0 / 0-0.002; final, wd 0.1: 0.53-0.88 / 0.50-0.90
  (first probe at >= 0.4: steps 1500-2100 / 500-2500); final, wd 0:
  0.35-0.45 / 0.28-0.82;
- final mass at position 0, wd 0.1: 0.50-0.61 / 0.49-0.84 (0.205-0.217 at step 0);
  at position 1: 0.053-0.074 / 0.024-0.089 (ratio 6.7-11.5 / 5.5-34), where
  no head ever exceeded 0.3;
- final mass, wd 0: 0.36-0.44 / 0.32-0.58; gain of wd 0.1 over wd 0:
  0.068-0.25 / 0.10-0.35, and Sink^0.3 higher with weight decay in every
  seed at both sizes (by 0.11-0.50 / 0.074-0.36).

Weight decay, up to a point (separate runs of the full setting, 8 seeds,
not arms): with weight decay 0.3 the sink forms and then fades (Sink^0.3
peaks at 0.42-0.5 in 6 of 8 seeds, at steps 1300-1800, and ends at 0 in 6
of 8, at most 0.38; final mass 0.21-0.26); with 1.0 no head ever leaves
even attention (Sink^0.3 0 at every probe, mass 0.21, final loss
0.263-0.266 against 0.260-0.262 at 0.1). The gain needs a learning rate at which
plain training forms the sink slowly: at lr 1e-2 weight decay only lowers
it (batches of 16, 3000 steps, 8 seeds: final Sink^0.3 0.41-1.0 at wd 0,
0.48-0.94 at 0.01, 0.45-0.74 at 0.03; at 0.1 it peaks at 0.5-0.8 in 7 of 8
seeds, mostly by step 600, and ends at 0 in every seed).

Where no sink formed: `markov-text` with branching 4 (2 layers, d_model 64,
800 steps: Sink^0.3 0 throughout, attention even; 4 layers x 8 heads, with
or without layernorm, 1000 steps: at most 0.03), and `repeated-tokens`
(2 layers, 1000 steps: 0.02 in one seed, 0.37 in another). Our reading:
with random successors the loss floor is reached and the gradient is noise
from then on; the deterministic chain keeps AdamW pushing the margins up,
the "effective optimization" the sink follows.
"""

from __future__ import annotations

from learnscope import registry
from learnscope.catalog.base import Arm, Figure, Phenomenon
from learnscope.results import ArmData, Bands, Threshold, Verdict, first_step
from learnscope.spec import Experiment

SEEDS_MEASURED = {"full": 10, "quick": 4}
NEAR_ZERO = Threshold(0.05, "NEAR_ZERO", "most Sink^0.3 at step 0 (weight decay 0.1)", "rate at step 0",
                      full=(0.0, 0.002), quick=(0.0, 0.0), seeds=SEEDS_MEASURED)
SINK_LEVEL = Threshold(0.4, "SINK_LEVEL", "least final Sink^0.3 with weight decay 0.1", "final rate",
                       full=(0.5, 0.895), quick=(0.531, 0.875), seeds=SEEDS_MEASURED)
FIRST_SHARE = Threshold(3.0, "FIRST_SHARE", "least final mass at position 0 / mass at position 1 (weight decay 0.1)",
                        "mass 0 / mass 1", full=(5.49, 34.4), quick=(6.70, 11.5), seeds=SEEDS_MEASURED)
SECOND_MAX = Threshold(0.05, "SECOND_MAX", "most final Sink^0.3 at position 1 (weight decay 0.1)",
                       "rate at position 1", full=(0.0, 0.0), quick=(0.0, 0.0), seeds=SEEDS_MEASURED)
WD_GAIN = Threshold(0.03, "WD_GAIN", "least final mass at position 0 with weight decay 0.1 minus without",
                    "mass gain", full=(0.103, 0.345), quick=(0.068, 0.247), seeds=SEEDS_MEASURED)

RATE, MASS = "attention_sink/rate", "attention_sink/mass"
RATE_1, MASS_1 = "attention_sink@k1/rate", "attention_sink@k1/mass"
WEIGHT_DECAYS = {"wd-0.1": 0.1, "wd-0": 0.0}
MAIN, PLAIN = "wd-0.1", "wd-0"
PROBED = 128  # test sequences the sink probe reads


def sink_probe(position: int = 0) -> dict:
    probe = {"name": "attention_sink", "split": "test", "max_examples": PROBED, "eps": 0.3, "position": position}
    return probe if position == 0 else {**probe, "label": f"k{position}"}


def sink_experiment(quick: bool, weight_decay: float) -> Experiment:
    steps, batch = (2400, 8) if quick else (3000, 16)
    return Experiment.model_validate({
        "task": {"name": "markov-text", "vocab": 64, "length": 16, "branching": 1, "train_sequences": 4096,
                 "test_sequences": 256},
        "model": {"name": "transformer", "layers": 2, "d_model": 32, "heads": 4, "d_mlp": 128, "layernorm": True},
        "recipe": {"optimizer": "adamw", "lr": 3e-3, "weight_decay": weight_decay, "batch_size": batch,
                   "steps": steps, "probe_every": 100, "probe_log_points": 0, "checkpoint_every": None},
        "probes": [{"name": "loss", "splits": ["test"], "max_examples": 256}, sink_probe(), sink_probe(1)],
        "seeds": list(range(4 if quick else 10)),
    })


@registry.phenomena.register("attention-sink")
class AttentionSink(Phenomenon):
    summary = ("a tiny LM's heads come to park their attention on the first token during training; weight decay "
               "0.1 makes more of it than none")
    source = "When Attention Sink Emerges in Language Models: An Empirical View"
    headline = RATE
    required_share = 0.9
    thresholds = (NEAR_ZERO, SINK_LEVEL, FIRST_SHARE, SECOND_MAX, WD_GAIN)
    comparison = {RATE: "Sink^0.3 at the probed position", MASS: "mean attention received there"}

    def arms(self, quick: bool) -> list[Arm]:
        return [Arm(name, sink_experiment(quick, wd)) for name, wd in WEIGHT_DECAYS.items()]

    def check(self, arms: dict[str, ArmData]) -> Verdict:
        main = arms[MAIN]
        steps, rate = main.curve(RATE)
        _, mass = main.curve(MASS)
        rate_plain, mass_plain = arms[PLAIN].final(RATE), arms[PLAIN].final(MASS)
        rate_second, mass_second = main.final(RATE_1), main.final(MASS_1)
        start, final, final_mass = rate[:, 0], rate[:, -1], mass[:, -1]
        share = final_mass / mass_second
        gain = final_mass - mass_plain

        sig = self.signature(main.seeds)
        sig.measure("rate at step 0", start)
        sig.measure("final rate", final)
        sig.measure("sink step", first_step(steps, rate, SINK_LEVEL))
        sig.measure("mass at step 0", mass[:, 0])
        sig.measure("final mass", final_mass)
        sig.measure("final test loss", main.final("loss/test"))
        sig.measure("mass at position 1", mass_second)
        sig.measure("rate at position 1", rate_second)
        sig.measure("mass 0 / mass 1", share)
        sig.measure("final rate wd 0", rate_plain)
        sig.measure("final mass wd 0", mass_plain)
        sig.measure("rate gain", final - rate_plain)
        sig.measure("mass gain", gain)
        sig.claim(f"with weight decay 0.1, Sink^0.3 starts at most {NEAR_ZERO:g}", start <= NEAR_ZERO,
                  "Sink^0.3 at step 0 is {0:.3f}", start)
        sig.claim(f"with weight decay 0.1, Sink^0.3 ends at least {SINK_LEVEL:g}", final >= SINK_LEVEL,
                  "final Sink^0.3 {0:.3f}", final)
        sig.claim(f"the final mass at position 0 is at least {FIRST_SHARE:g} x that at position 1", share >= FIRST_SHARE,
                  "mass at position 0 {0:.3f}, at position 1 {1:.3f}", final_mass, mass_second)
        sig.claim(f"Sink^0.3 at position 1 ends at most {SECOND_MAX:g}", rate_second <= SECOND_MAX,
                  "Sink^0.3 at position 1 {0:.3f}", rate_second)
        sig.claim(f"weight decay 0.1 ends with at least {WD_GAIN:g} more mass at position 0 than none", gain >= WD_GAIN,
                  "mass {0:.3f} with weight decay 0.1, {1:.3f} without", final_mass, mass_plain)
        return sig.verdict()

    def figures(self, arms: dict[str, ArmData]) -> list[Figure]:
        lines = []
        for name in WEIGHT_DECAYS:
            steps, rate = arms[name].curve(RATE)
            _, mass = arms[name].curve(MASS)
            lines += [(f"Sink^0.3, {name}", steps, rate), (f"mass at position 0, {name}", steps, mass)]
        return [Bands(
            "Sink^0.3 (the share of heads whose mean attention received at the first token exceeds 0.3) and that "
            "mean attention (mass) over training, with and without weight decay; even attention gives mass 0.21 "
            "and Sink^0.3 0.",
            "attention sink over training", "step", "Sink^0.3 / mass", lines, ylim=(0.0, 1.0))]
