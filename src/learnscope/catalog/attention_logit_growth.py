"""Attention logit growth: at a high learning rate a tiny transformer's
attention logits grow by orders of magnitude, its attention entropy
collapses to one-hot and the loss plateaus above its floor; with
qk-layernorm the same learning rate keeps the logits bounded and the loss
reaches its floor.

Wortsman et al., "Small-scale proxies for large-scale Transformer training
instabilities", reproduce at small scale, by raising the learning rate, the
instability Dehghani et al. met at 8B parameters: the attention logits
z_ij = q_i . k_j / sqrt(d_head) grow, the attention turns one-hot (entropy
near 0), and the loss stops improving; layernorm of the queries and keys
(qk-layernorm) removes it. Probes (probes/stability.py):
`attention_logits/max`, the largest |z_ij| over layers, heads, causal pairs
and 32 test sequences; `attention_entropy/min`, per layer the mean entropy
(nats) of the attention rows over heads, positions and sequences, least
over layers (even causal attention over 16 positions: 1.88);
`output_log_z/mean`, the mean log-normalizer of the output softmax.

Setting: `markov-text` with branching 1 (a deterministic chain), 64
tokens, `<bos>` and 16 tokens, as `attention-sink` uses (test-loss floor
ln 64 / 16 = 0.26); a 2-layer pre-layernorm transformer (d_model 32, 4
heads, MLP 128), AdamW, no weight decay, betas (0.9, 0.98), batches of 8,
constant learning rate.

Arms, same seeds and data (quick: 4 seeds, 300 steps, probes every 100;
full: 8 seeds, 2000 steps, every 200):
- `low-lr`: lr 1e-3;
- `high-lr`: lr 0.1;
- `high-lr-qk-layernorm`: lr 0.1 with qk-layernorm (`model.qk_layernorm`).

Signature, per seed (required share 0.9):
- at lr 0.1 the final max attention logit is at least GROWN (5000), and at
  least RATIO (100) x its qk-layernorm twin's;
- with qk-layernorm the max attention logit is at most BOUND (500) at every
  probe;
- at lr 0.1 the final attention entropy is at most COLLAPSED (0.02) nats;
  with qk-layernorm at least KEPT (0.03);
- the loss plateaus: at lr 0.1 the final test loss is at least PLATEAU
  (0.03) above its qk-layernorm twin's.

Measured (quick 16 seeds, 300 steps / full 16 seeds, 2000 steps; no seed
diverged, no NaN):
- max logit at step 0: 1.29-2.01 (with qk-layernorm about 2.8: unit-variance
  queries and keys); final, low-lr: 2.3-3.3 / 2.1-4.0; high-lr:
  1.5e4-5.4e4 / 1.0e5-3.9e5; qk-layernorm: 12-47 / 38-171 (the largest over
  the probes 12-48 / 38-171: qk-layernorm's gains still grow slowly);
  high-lr over its qk-layernorm twin: 438-3415 / 1298-9835;
- entropy at step 0: 1.87-1.88; final, low-lr 1.77-1.86 / 1.68-1.85;
  high-lr 4.4e-4-6.4e-3 / 7.8e-42-1.8e-4; qk-layernorm 0.32-1.14 / 0.073-0.42;
- final test loss, low-lr 0.29-0.32 / 0.261-0.264; high-lr 0.54-1.03 /
  0.34-0.81; qk-layernorm 0.28-0.34 / 0.27-0.31; gap high-lr minus its twin
  0.24-0.74 / 0.062-0.53;
- final log Z: high-lr 10.7-20.2 / 17-37, qk-layernorm 21-29 / 24-37
  (the chain is deterministic, so the outputs grow confident either way).
More seeds: quick, 48 seeds: 48 hold (high-lr final max logit from 1.27e4,
ratio from 417, entropy at most 6.4e-3, qk-layernorm's at least 0.32, loss
gap from 0.079).

z-loss (separate runs, 4 seeds, 2000 steps, lr 0.1, coefficient 1e-4, not
an arm): with qk-layernorm it holds log Z at -0.5-1.4 (against 24-37
without) at the same loss (0.28-0.30); without qk-layernorm it lowers log Z
(4-9) but the attention logits grow as before (1.1e5-3.9e5, entropy
<= 3e-4, loss 0.40-0.46): z-loss answers the output logits' divergence,
not the attention's.

What did not work (4 seeds each): lr 1e-2 grows the logits only to 19-24
by 1000 steps (entropy 0.54-1.09, loss at its floor); lr 3e-2 grows them to
120-267 by 500 steps with entropy 0.08-0.15, but the loss reaches its floor
(0.26-0.27): collapse without a plateau. `markov-text` with branching 4 at
lr 3e-2 (1000 steps): logits 580-900 against 19-25 with qk-layernorm,
entropy 0.01 against 0.15-0.20, but the same loss in both arms (1.40-1.48):
the random successors leave attention nothing to gain, so its collapse
costs nothing. At lr 0.1 (no warmup) the logits reach 1e4 within 200 steps
while the loss stalls at 0.4-1.0 and recovers only slowly.
"""

from __future__ import annotations

import numpy as np

from learnscope import registry
from learnscope.catalog.base import Arm, Figure, Phenomenon
from learnscope.results import ArmData, Bands, Threshold, Verdict
from learnscope.spec import Experiment

SEEDS_MEASURED = {"full": 16, "quick": 16}
RATIO = Threshold(100.0, "RATIO", "least final max attention logit of high-lr over its qk-layernorm twin's",
                  "logit ratio", full=(1298, 9835), quick=(437.7, 3415), seeds=SEEDS_MEASURED)
GROWN = Threshold(5000.0, "GROWN", "least final max attention logit at the high learning rate", "final max logit",
                  full=(1.041e5, 3.872e5), quick=(1.475e4, 5.398e4), seeds=SEEDS_MEASURED)
BOUND = Threshold(500.0, "BOUND", "most max attention logit, at any probe, with qk-layernorm",
                  "max logit qk-layernorm", full=(38.41, 170.7), quick=(12.08, 47.75), seeds=SEEDS_MEASURED)
COLLAPSED = Threshold(0.02, "COLLAPSED", "most final attention entropy (nats, least over layers) at the high "
                      "learning rate", "final entropy", full=(7.8e-42, 1.817e-4), quick=(4.398e-4, 6.356e-3),
                      seeds=SEEDS_MEASURED)
KEPT = Threshold(0.03, "KEPT", "least final attention entropy (nats, least over layers) with qk-layernorm",
                 "final entropy qk-layernorm", full=(0.07286, 0.4218), quick=(0.324, 1.14), seeds=SEEDS_MEASURED)
PLATEAU = Threshold(0.03, "PLATEAU", "least final test loss of high-lr above its qk-layernorm twin's", "loss gap",
                    full=(0.06201, 0.534), quick=(0.2387, 0.7433), seeds=SEEDS_MEASURED)

LOGITS = "attention_logits/max"
ENTROPY = "attention_entropy/min"
LOG_Z = "output_log_z/mean"
LOSS = "loss/test"
LOW, HIGH, QK = "low-lr", "high-lr", "high-lr-qk-layernorm"
LOW_LR, HIGH_LR = 1e-3, 1e-1
PROBED = 32  # test sequences the attention probes read


def growth_experiment(quick: bool, lr: float = HIGH_LR, qk_layernorm: bool = False) -> Experiment:
    return Experiment.model_validate({
        "task": {"name": "markov-text", "vocab": 64, "length": 16, "branching": 1, "train_sequences": 4096,
                 "test_sequences": 256},
        "model": {"name": "transformer", "layers": 2, "d_model": 32, "heads": 4, "d_mlp": 128, "layernorm": True,
                  "qk_layernorm": qk_layernorm},
        "recipe": {"optimizer": "adamw", "lr": lr, "weight_decay": 0.0, "batch_size": 8,
                   "steps": 300 if quick else 2000, "probe_every": 100 if quick else 200, "probe_log_points": 0,
                   "checkpoint_every": None},
        "probes": [{"name": "loss", "splits": ["test"], "max_examples": 256},
                   {"name": "attention_logits", "split": "test", "max_examples": PROBED},
                   {"name": "attention_entropy", "split": "test", "max_examples": PROBED},
                   {"name": "output_log_z", "split": "test", "max_examples": 256}],
        "seeds": list(range(4 if quick else 8)),
    })


@registry.phenomena.register("attention-logit-growth")
class AttentionLogitGrowth(Phenomenon):
    summary = ("at a high learning rate a tiny transformer's attention logits grow by orders of magnitude and its "
               "attention entropy collapses; qk-layernorm keeps them bounded")
    source = "Small-scale proxies for large-scale Transformer training instabilities"
    headline = LOGITS
    required_share = 0.9
    thresholds = (RATIO, GROWN, BOUND, COLLAPSED, KEPT, PLATEAU)
    comparison = {LOGITS: "largest attention logit |q.k|/sqrt(d_head), largest over layers",
                  ENTROPY: "mean attention entropy (nats), least over layers"}

    def arms(self, quick: bool) -> list[Arm]:
        high = Arm(HIGH, growth_experiment(quick))
        return [high.derive(LOW, {"recipe.lr": LOW_LR}), high, high.derive(QK, {"model.qk_layernorm": True})]

    def check(self, arms: dict[str, ArmData]) -> Verdict:
        high, low, qk = arms[HIGH], arms[LOW], arms[QK]
        logits, logits_low, logits_qk = high.final(LOGITS), low.final(LOGITS), qk.final(LOGITS)
        peak_qk = np.nanmax(qk.curve(LOGITS)[1], axis=1)
        ratio = logits / logits_qk
        entropy, entropy_qk = high.final(ENTROPY), qk.final(ENTROPY)
        loss, loss_qk = high.final(LOSS), qk.final(LOSS)
        gap = loss - loss_qk

        sig = self.signature(high.seeds)
        sig.measure("max logit at step 0", high.curve(LOGITS)[1][:, 0])
        sig.measure("final max logit", logits)
        sig.measure("final max logit low-lr", logits_low)
        sig.measure("final max logit qk-layernorm", logits_qk)
        sig.measure("max logit qk-layernorm", peak_qk)
        sig.measure("logit ratio", ratio)
        sig.measure("logit ratio to low-lr", logits / logits_low)
        sig.measure("entropy at step 0", high.curve(ENTROPY)[1][:, 0])
        sig.measure("final entropy", entropy)
        sig.measure("final entropy low-lr", low.final(ENTROPY))
        sig.measure("final entropy qk-layernorm", entropy_qk)
        sig.measure("final test loss", loss)
        sig.measure("final test loss low-lr", low.final(LOSS))
        sig.measure("final test loss qk-layernorm", loss_qk)
        sig.measure("loss gap", gap)
        sig.measure("final log Z", high.final(LOG_Z))
        sig.measure("final log Z qk-layernorm", qk.final(LOG_Z))
        sig.claim(f"at lr {HIGH_LR:g} the max attention logit ends at least {GROWN:g}", logits >= GROWN,
                  "final max logit {0:.1f}", logits)
        sig.claim(f"it ends at least {RATIO:g} x its qk-layernorm twin's", ratio >= RATIO,
                  "max logit {0:.1f}, with qk-layernorm {1:.1f}", logits, logits_qk)
        sig.claim(f"with qk-layernorm the max attention logit stays at most {BOUND:g} at every probe", peak_qk <= BOUND,
                  "largest over the probes {0:.1f}", peak_qk)
        sig.claim(f"at lr {HIGH_LR:g} the attention entropy ends at most {COLLAPSED:g} nats", entropy <= COLLAPSED,
                  "final entropy {0:.4f}", entropy)
        sig.claim(f"with qk-layernorm it ends at least {KEPT:g} nats", entropy_qk >= KEPT,
                  "final entropy with qk-layernorm {0:.4f}", entropy_qk)
        sig.claim(f"the loss plateaus: at lr {HIGH_LR:g} the final test loss is at least {PLATEAU:g} above its "
                  "qk-layernorm twin's", gap >= PLATEAU, "final test loss {0:.3f}, with qk-layernorm {1:.3f}",
                  loss, loss_qk)
        return sig.verdict()

    def figures(self, arms: dict[str, ArmData]) -> list[Figure]:
        logits = []
        for name in (LOW, HIGH, QK):
            steps, values = arms[name].curve(LOGITS)
            logits.append((name, steps, np.log10(values)))
        entropy = [(name, *arms[name].curve(ENTROPY)) for name in (LOW, HIGH, QK)]
        return [
            Bands("The largest attention logit |q.k|/sqrt(d_head) (over layers, heads, positions and 32 test "
                  "sequences) over training, at a low and a high learning rate and at the high one with qk-layernorm.",
                  "max attention logit over training", "step", "log10 max attention logit", logits),
            Bands("Mean attention entropy (nats; the least over layers) over training; even causal attention over "
                  "16 positions gives 1.88.", "attention entropy over training", "step", "entropy (nats)", entropy),
        ]
