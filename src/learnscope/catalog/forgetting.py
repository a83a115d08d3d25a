"""What the forgetting entries of the catalog share (family 4 of
../shared/catalog.md): their streams, the continual-learning strategies
with the parameters measured for them, and the paired, seed-by-seed reading
of the continual measures (learnscope.continual) from each arm's store.

Setting. Permuted digits, the small analogue of permuted MNIST (domain-
incremental): scikit-learn's 8x8 digits (`digits`, 1348 training and 449
test examples per seed), each experience the whole task under its own
fixed pixel permutation (drawn per seed; the first experience unpermuted),
met one after another in blocks of equal length (`permuted-stream`,
`schedule: sequential`). An MLP with one hidden layer of 100 ReLU units,
plain SGD (lr 0.1, no momentum), batches of 32. Every arm of a phenomenon
is the same experiment but for its strategy (the same stream, seeds, data,
initial weights and batch order), so arms are compared seed by seed.

Probes: accuracy on every experience's test split (the accuracy matrix R)
and on all of them together (`accuracy/test`, the headline), at the block
ends, which streams always probe, and nowhere else (`PROBE_EVERY` None):
a probe over the 10 x 449 test examples costs as much as ~15 updates of
this small MLP, so probing every 50 updates made the runs 1.4-1.6x slower
(benchmarks/probes.py); at the block ends it costs ~5%.

Strategies (learnscope.interventions: every intervention whose
`stream_strategy` gives its parameters on these streams, so a new strategy
joins from its own file) and their parameters, measured on this setting
(5 experiences x 300 updates unless said; 8 seeds; forgetting is the mean
largest drop, learnscope.continual):
- `naive`: sequential SGD, nothing else (forgetting 0.48; 0.64 at 10
  experiences).
- `joint`: every update draws from every experience of the stream from the
  start (interventions/joint.py), the upper bound on average accuracy.
- `ewc`: online EWC, lamb = 15 (gamma 1, Fisher from 128 single examples).
  With plain SGD the penalty is stable only while lr * lamb * F < 2, and the
  Fisher accumulates over experiences: at 10 experiences lamb = 20 made 1
  of 8 seeds diverge and lamb = 30 six of 8; lamb = 15 ran 24 of 24 seeds
  without divergence (forgetting 0.36-0.46; lamb 10: 0.39-0.51 on the same
  24 seeds; lamb 5: 0.46-0.59 on 8). At 5 experiences lamb 10/15/20/30 gave
  0.33/0.30/0.28/0.24. One lamb for every stream keeps the entries
  comparable. A smaller lr lets lamb grow (lr 0.05, 10 experiences: lamb 40
  forgot 0.19-0.29 against naive training's 0.55-0.66, lamb 80 diverged in
  every seed) but changes every arm; the entries keep lr 0.1.
- `si`: synaptic intelligence, c = 1 (c 0.3: 0.32; c 2: 0.20 but one seed
  of 8 diverged; c 4: every seed diverged).
- `replay`: a reservoir buffer of MEMORY_PER_EXPERIENCE (100) examples per
  experience of the stream (500 at 5 experiences, 1000 at 10), 32 replayed
  per update: the same memory the episodic strategies end with (a buffer
  of 200 forgot 0.14, of 500 0.11).
- `power-law-rehearsal`: 100 examples kept per experience, 32 of one
  earlier experience rehearsed per update, chosen as a power law (exponent
  1) of the updates since it was last seen.
- `lwf`: alpha = 1, temperature 2. alpha trades what is kept for what is
  learned: alpha 3 forgot least (0.12) but reached an average accuracy
  below naive training's (0.47 against 0.56); alpha 0.3/0.5/1 gave average
  accuracy 0.59/0.60/0.59, forgetting 0.41/0.39/0.31.
- `agem`: 100 examples kept per experience, reference batches of 128 (the
  effect needs >= 100; 256 did no better, 0.28 against 0.29).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from learnscope import continual, registry
from learnscope.catalog.base import Arm
from learnscope.errors import LearnscopeError
from learnscope.results import ArmData, Signature
from learnscope.spec import Experiment
from learnscope.train.hooks import StreamBudget

LR = 0.1
BATCH_SIZE = 32
HIDDEN = [100]
PROBE_EVERY: int | None = None  # block ends only (module docstring)
MEMORY_PER_EXPERIENCE = 100
REHEARSED_PER_UPDATE = 32

NAIVE = "naive"  # sequential training with no strategy: the arm every strategy is compared to

# Keys a global `--set` must not change alone (Phenomenon.moves_together): a stream probes one test
# split per experience, so the number of experiences moves with the probed splits ...
STREAM_KEYS = ("task.experiences", "probes.0.splits")
# ... and, where an arm replays (the `replay` strategy is its only intervention), with the reservoir
# buffer, which holds MEMORY_PER_EXPERIENCE examples per experience of the stream.
REPLAY_STREAM_KEYS = (*STREAM_KEYS, "interventions.0.buffer_size")


@dataclass(frozen=True)
class StreamSize:
    experiences: int
    updates: int  # per experience
    seeds: int


# The size of the forgetting entries (catastrophic-forgetting, ewc, replay, power-law-rehearsal):
# 10 experiences at full size, as the permuted-MNIST papers use; 5 at --quick.
FULL = StreamSize(experiences=10, updates=300, seeds=8)
QUICK = StreamSize(experiences=5, updates=200, seeds=4)


def forgetting_size(quick: bool) -> StreamSize:
    return QUICK if quick else FULL


def strategy_names() -> list[str]:
    """Naive training, then every registered intervention that is a continual
    strategy (`Intervention.stream_strategy`): joint first, the upper bound,
    then the others by name. A new strategy's file is all it takes to join."""
    found = [name for name, cls in registry.interventions.items() if cls.stream_strategy(_probe_budget) is not None]
    return [NAIVE, *sorted(found, key=lambda name: (name != "joint", name))]


_probe_budget = StreamBudget(experiences=1, memory_per_experience=MEMORY_PER_EXPERIENCE,
                             rehearsed_per_update=REHEARSED_PER_UPDATE)


def strategy(name: str, experiences: int) -> list[dict]:
    """The interventions of a strategy arm, with the parameters the strategy
    takes on these streams (each strategy's `stream_strategy`; measured as the
    module docstring tells)."""
    if name == NAIVE:
        return []
    budget = StreamBudget(experiences, MEMORY_PER_EXPERIENCE, REHEARSED_PER_UPDATE)
    parameters = registry.interventions.get(name, "strategy").stream_strategy(budget)
    if parameters is None:
        raise LearnscopeError(f"intervention '{name}' is not a continual-learning strategy; "
                              f"strategies: {', '.join(strategy_names())}")
    return [{"name": name, **parameters}]


def stream_experiment(task: dict, size: StreamSize, interventions: Sequence[dict] = (), *, lr: float = LR,
                      momentum: float = 0.0, probe_every: int | None = PROBE_EVERY,
                      probe_after_switch: int = 0) -> Experiment:
    """An MLP trained by SGD on a stream of `size.experiences` experiences,
    `size.updates` updates each, probed for the accuracy matrix."""
    task = {**task, "experiences": size.experiences}
    splits = ["test", *(f"test/{e}" for e in range(size.experiences))]
    return Experiment.model_validate({
        "task": task,
        "model": {"name": "mlp", "hidden": HIDDEN},
        "recipe": {"optimizer": "sgd", "lr": lr, "momentum": momentum, "batch_size": BATCH_SIZE,
                   "steps": size.experiences * size.updates, "probe_every": probe_every, "probe_log_points": 0,
                   "probe_after_switch": probe_after_switch},
        "interventions": list(interventions),
        "probes": [{"name": "accuracy", "splits": splits}],
        "seeds": size.seeds,
    })


def permuted_digits(size: StreamSize, interventions: Sequence[dict] = ()) -> Experiment:
    """The permuted-digits stream of the forgetting entries (module docstring)."""
    return stream_experiment({"name": "permuted-stream", "base": {"name": "digits"}}, size, interventions)


def strategy_arms(names: Sequence[str], size: StreamSize) -> list[Arm]:
    """One arm per strategy, all on the same permuted-digits stream and seeds."""
    stream = permuted_digits(size)
    return [Arm(name, stream.derive({"interventions": strategy(name, size.experiences)})) for name in names]


def arm_measures(arms: dict[str, ArmData]) -> dict[str, dict[str, np.ndarray]]:
    """Per arm, the continual measures per seed (average_accuracy,
    backward_transfer, forward_transfer, forgetting), seeds in the same order
    in every arm (a seed that diverged in any arm is left out of all)."""
    out = {}
    for name, arm in arms.items():
        measures = continual.arm_measures(arm)
        if measures is None:
            raise KeyError(f"arm '{name}' is not a stream probed on every experience's test split")
        out[name] = measures
    return out


def forgetting_against(sig: Signature, measures: dict[str, dict[str, np.ndarray]], strategy: str,
                       baseline: str) -> None:
    """Record, per seed, what `baseline` and `strategy` forget on the same
    stream and seed, and their ratio (nan where the baseline forgot nothing)."""
    mine, theirs = measures[strategy]["forgetting"], measures[baseline]["forgetting"]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(theirs > 0, mine / theirs, np.nan)
    sig.measure(f"{baseline} forgetting", theirs)
    sig.measure(f"{strategy} forgetting", mine)
    sig.measure(f"{strategy} / {baseline} forgetting", ratio)


def forgets_less(sig: Signature, measures: dict[str, dict[str, np.ndarray]], strategy: str, baseline: str,
                 max_ratio: float) -> np.ndarray:
    """Claim, per seed, that `strategy` forgets at most `max_ratio` times what
    `baseline` forgets on the same stream and seed; returns where it holds."""
    mine, theirs = measures[strategy]["forgetting"], measures[baseline]["forgetting"]
    return sig.claim(f"{strategy} forgets at most {max_ratio:g} x what {baseline} forgets",
                     mine <= max_ratio * theirs,
                     f"{strategy} forgot {{0:.3f}} > {max_ratio:g} x {baseline}'s {{1:.3f}}", mine, theirs)
