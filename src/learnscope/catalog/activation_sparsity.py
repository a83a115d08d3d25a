"""Activation sparsity: during training, the share of a transformer's MLP
hidden units that its ReLU switches off for a token rises from about half
to well above it, on training and held-out sequences alike, and more on
the training distribution than on random tokens.

Li et al., "The Lazy Neuron Phenomenon: On Emergence of Activation Sparsity
in Transformers": the activation map after the ReLU of every MLP block is
sparse (3.0% of entries nonzero per token for T5-Base), sparsity emerges
during training, on training and evaluation data, at every depth. Probe
`activation_sparsity`: per seed, the share of the site's entries that are
exactly zero over every position of the examples read, which is 1 minus the
paper's percentage of nonzero entries per token, averaged over tokens.

Setting: `markov-text` (64 tokens, 4 successors each, `<bos>` and 7 tokens
read, 2048 training sequences), a 2-layer transformer (d_model 32, 4 heads,
MLP 128 wide with ReLU, pre-layernorm), AdamW lr 3e-3 without weight decay,
batches of 32; quick: 4 seeds, 300 steps, probed every 75; full: 8 seeds,
1500 steps, probed every 100. One arm, `transformer`. Each layer's share is
probed on the first 256 training sequences, the first 256 held-out ones,
and 256 random sequences (`inputs: random`: every position a token drawn
uniformly, `<bos>` included, the same draws at every probe step).

Signature, per seed (required share 0.9):
- in every layer, the share of zeros on training sequences rises by at
  least RISE (0.05) from step 0, where a ReLU of the initial weights
  switches off about half (measured 0.46-0.56), and ends at least LEVEL
  (0.55);
- on held-out sequences it rises by at least RISE in every layer too;
- at the end, over all MLP units of the network (both layers pooled, each
  128 units at every position: the layers' mean), the share on training
  sequences exceeds the share on random tokens by at least RANDOM_GAP
  (0.005).

Measured (quick 4 seeds / full 8 seeds; the claims' ranges are also data
on the thresholds, `learnscope list activation-sparsity`):
- at step 0, both layers: 0.456-0.513 / 0.456-0.557;
- at the end on training sequences: layer 0 0.570-0.599 / 0.619-0.649,
  layer 1 0.630-0.640 / 0.720-0.773; on held-out sequences within 0.007 of
  these; least rise over the layers 0.069-0.092 / 0.121-0.154 (held-out:
  0.070-0.093 / 0.122-0.155);
- train minus random tokens at the end: layer 0 0.023-0.043 / 0.017-0.046,
  layer 1 0.017-0.032 / -0.003-0.032 (layer 1 alone is not reliable: in
  seed 3 at full size random tokens are 0.003 sparser), pooled 0.022-0.031
  / 0.011-0.037. The excess is largest at position 0, always `<bos>` in the
  data (layer 0: 0.67 against 0.53, quick, mean of seeds), but holds at
  every other position too (0.005-0.031 per position, both layers);
- no unit is dead (off on all 256 training sequences) at the end of the
  quick size: the sparsity is per token, as the paper finds;
- quick at 12 seeds (0-11): every seed holds, least rise 0.059-0.097,
  pooled excess over random tokens 0.022-0.034.

Where it did not rise (MLPs [256, 256], separate runs of 2-4 seeds, the
probe on `hidden.i`): on `gaussian-mixture` (10 classes, dim 32; SGD lr
0.1-0.5 or Adam 1e-3) layer 1's share falls from 0.48-0.50 to 0.20-0.43
and layer 0's stays at 0.47-0.52; on `digits` (SGD lr 0.1-0.3, Adam 1e-3)
both fall to 0.21-0.40. It rises only with SGD at lr 1.0-2.0 (to
0.56-1.0), where units die (on digits at lr 1.0, 11-98% of layer 0's; a
one-layer MLP at lr 2.0 loses all), which is not the paper's per-token
sparsity. On `teacher-student` (regression, Adam) layer 1 rises slowly
after the fit (0.50 to 0.59-0.64 in 2000 steps), but there Gaussian inputs
are the training distribution. Where units did not die, the MLPs were
sparser on their data than on Gaussian inputs with its per-feature mean
and std (by 0.005-0.09). On the transformer, lr 1e-2 (layer 1 to
0.88-0.90, random tokens as sparse), weight decay 0.1 and SGD at lr 0.3
rise as well; sequences of 16 tokens rise alike (layer 0 0.58-0.60, layer
1 0.61-0.65 at 300 steps) with a smaller excess over random tokens in
layer 1 (0.00-0.02).

Wall time, one thread (`learnscope verify`, on this 2-core machine while
other runs shared it, load 3-4): quick 12.7-23 s over four runs (9.4-11.5 s
of CPU), full 2 min 27 s (51 s of CPU).
"""

from __future__ import annotations

import numpy as np

from learnscope import registry
from learnscope.catalog.base import Arm, Phenomenon
from learnscope.results import ArmData, Threshold, Verdict
from learnscope.spec import Experiment

LAYERS = 2
EXAMPLES = 256  # probed per split (the first ones), and random inputs drawn
SEEDS_MEASURED = {"full": 8, "quick": 4}
RISE = Threshold(0.05, "RISE", "least rise, step 0 to the end, of the share of zeros in every layer, on training "
                 "sequences (and on held-out ones)", "least rise (train)",
                 quick=(0.0694, 0.0923), full=(0.121, 0.154), seeds=SEEDS_MEASURED)
LEVEL = Threshold(0.55, "LEVEL", "least share of zeros on training sequences at the end, every layer",
                  "least final (train)", quick=(0.570, 0.599), full=(0.619, 0.649), seeds=SEEDS_MEASURED)
RANDOM_GAP = Threshold(0.005, "RANDOM_GAP", "least excess at the end of the share of zeros over all MLP units on "
                       "training sequences over random tokens", "network train - random",
                       quick=(0.0218, 0.0309), full=(0.0106, 0.0369), seeds=SEEDS_MEASURED)


def sparsity_experiment(quick: bool) -> Experiment:
    sites = [f"mlp.{layer}" for layer in range(LAYERS)]
    probes: list = [{"name": "loss", "max_examples": EXAMPLES}]
    for site in sites:
        for split, inputs in (("train", "data"), ("test", "data"), ("train", "random")):
            probes.append({"name": "activation_sparsity", "site": site, "split": split, "inputs": inputs,
                           "max_examples": EXAMPLES})
    return Experiment.model_validate({
        "task": {"name": "markov-text", "vocab": 64, "length": 8, "branching": 4, "train_sequences": 2048,
                 "test_sequences": 256},
        "model": {"name": "transformer", "layers": LAYERS, "d_model": 32, "heads": 4, "d_mlp": 128,
                  "activation": "relu"},
        "recipe": {"optimizer": "adamw", "lr": 3e-3, "weight_decay": 0.0, "batch_size": 32,
                   "steps": 300 if quick else 1500, "probe_every": 75 if quick else 100, "probe_log_points": 0},
        "probes": probes,
        "seeds": list(range(4 if quick else 8)),
    })


@registry.phenomena.register("activation-sparsity")
class ActivationSparsity(Phenomenon):
    summary = "the share of zero ReLU activations in a transformer's MLPs rises during training, more on its data"
    source = "The Lazy Neuron Phenomenon: On Emergence of Activation Sparsity in Transformers"
    headline = "loss/test"
    required_share = 0.9
    thresholds = (RISE, LEVEL, RANDOM_GAP)
    fixed = ("model.layers", "model.attn_only")  # the probes and the signature read mlp.0 and mlp.1

    def arms(self, quick: bool) -> list[Arm]:
        return [Arm("transformer", sparsity_experiment(quick))]

    def check(self, arms: dict[str, ArmData]) -> Verdict:
        arm = arms["transformer"]
        sig = self.signature(arm.seeds)
        final, rise, test_rise, gap = [], [], [], []
        for layer in range(LAYERS):
            site = f"mlp.{layer}"
            train = arm.curve(f"activation_sparsity/{site}/train")[1]
            test = arm.curve(f"activation_sparsity/{site}/test")[1]
            random = arm.curve(f"activation_sparsity/{site}/random")[1]
            sig.measure(f"{site} initial (train)", train[:, 0])
            final.append(sig.measure(f"{site} final (train)", train[:, -1]))
            sig.measure(f"{site} final (test)", test[:, -1])
            sig.measure(f"{site} final (random)", random[:, -1])
            rise.append(train[:, -1] - train[:, 0])
            test_rise.append(test[:, -1] - test[:, 0])
            gap.append(sig.measure(f"{site} train - random", train[:, -1] - random[:, -1]))
        least_final = sig.measure("least final (train)", np.min(final, axis=0))
        least_rise = sig.measure("least rise (train)", np.min(rise, axis=0))
        least_test_rise = sig.measure("least rise (test)", np.min(test_rise, axis=0))
        # every layer has d_mlp units at every position: the share over the whole network is the layers' mean
        network_gap = sig.measure("network train - random", np.mean(gap, axis=0))
        sig.claim(f"the share of zeros on training inputs rises by >= {RISE:g} in every layer", least_rise >= RISE,
                  "the share of zeros on training inputs rose by only {0:.3f} in a layer", least_rise)
        sig.claim(f"it ends at >= {LEVEL:g} in every layer", least_final >= LEVEL,
                  "the share of zeros on training inputs ended at {0:.3f} in a layer", least_final)
        sig.claim(f"on held-out sequences too it rises by >= {RISE:g} in every layer", least_test_rise >= RISE,
                  "the share of zeros on held-out sequences rose by only {0:.3f} in a layer", least_test_rise)
        sig.claim(f"at the end, over all MLP units, it exceeds the share on random tokens by >= {RANDOM_GAP:g}",
                  network_gap >= RANDOM_GAP,
                  "the share of zeros on training inputs exceeded random tokens' by only {0:.4f}", network_gap)
        return sig.verdict()
