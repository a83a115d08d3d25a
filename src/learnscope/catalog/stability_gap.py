"""The stability gap: right after a switch to a new experience, accuracy on
the earlier experiences drops sharply within a few updates and then
recovers, even with replay, so the drop shows only to an evaluation that
looks at every step after the switch, not at the ends of the experiences
("Efficient Continual Pre-training by Mitigating the Stability Gap", which
finds in LLMs the gap "previously noted in vision models classifying new
classes": De Lange et al., "Continual evaluation for lifelong learning:
identifying the stability gap").

Setting: class-incremental split digits (`split-stream`, `scenario: class`:
the 10 classes in 5 experiences of 2, one head over all classes, the
analogue of split MNIST), an MLP [100], SGD with momentum 0.9 (lr 0.05,
batches of 32), and experience replay: a reservoir of 100 examples per
experience (500), 32 of them joining every update's 32. One arm, `replay`.
Full size: 5 experiences x 500 updates, every one of the first 30 updates
after each switch probed (`recipe.probe_after_switch`) and every 100th, 8
seeds; --quick: 5 x 100 updates, window 25, every 25th, 4 seeds.

Why this setting. The gap is a class-incremental effect of the optimizer's
step, measured at full size (8 seeds, `--set` on this entry; "dip" is
before - minimum, its mean over the 4 switches):
- plain SGD (no momentum) at lr 0.1: mean dip 0.06-0.10, smallest
  recovery 0.01-0.05, the minimum 28-49 updates after the switch; at lr
  0.3: mean dip 0.09-0.20, smallest dip 0.03-0.06;
- SGD with momentum 0.9 at lr 0.05 (this entry): the velocity built on the
  new classes carries the head's new-class logits far past where the
  replayed examples hold them, and old accuracy falls from 0.98-1.00 to
  0.2-0.4 (mean over switches) within 10-15 updates, then returns to
  0.96-0.99;
- the same recipe on permuted digits (domain-incremental, the same head
  for every experience): mean dip 0.10-0.15, smallest dip 0.03-0.08;
- the same recipe without replay: old accuracy falls to 0.000 at every
  switch and stays there (recovery 0): forgetting, not a gap.

Measure (`stability_gap`): at the switch into experience e, the
old-experience accuracy is the mean accuracy on the test splits of the
experiences met before (j < e in this sequential stream); per switch and seed, `minimum` is its lowest
value in the window of the first updates after the switch, `before` its
value at the switch, `final` its value at the end of experience e's block.
The dip before - minimum says how far it fell; the recovery final -
minimum how far below where it ends it went.

Signature, per seed, at every one of the 4 switches: the dip is at least
MIN_DIP (0.25) and the recovery at least MIN_RECOVERY (0.25): the
accuracy falls, and the fall is not kept. Measured = ranges across seeds
of `learnscope run stability-gap --seeds 16` ("full") and `--quick --seeds
16` ("quick"); the default seeds are among them:
- smallest dip over the switches 0.36-0.66 full, 0.51-0.68 quick (mean
  over switches 0.58-0.76 full, 0.67-0.81 quick);
- smallest recovery 0.35-0.63 full, 0.48-0.68 quick (mean 0.58-0.75
  full, 0.65-0.79 quick);
- old accuracy, mean over switches: 0.98-1.00 at the switch, 0.22-0.41 at
  its minimum, 0.96-0.99 at the end of the block (full; quick 0.17-0.32 at
  the minimum, 0.95-0.99 at the end); the minimum comes 10-15 updates
  after the switch (11-15 quick), well inside the window.

The report adds a figure of the old-experience accuracy over the window
after each switch (mean over seeds, band from the lowest to the highest).

Wall time on this 2-core CPU (`learnscope verify`, one torch thread, the
process's start included): full 7 s, --quick 3.7 s.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from learnscope import registry
from learnscope.catalog.base import ArmData, Phenomenon, Verdict
from learnscope.catalog.forgetting import StreamSize, strategy, stream_experiment
from learnscope.continual import Stream
from learnscope.spec import Experiment
from learnscope.tasks.base import Block

MIN_DIP = 0.25
MIN_RECOVERY = 0.25
LR = 0.05
MOMENTUM = 0.9
SPLIT_DIGITS = {"name": "split-stream", "scenario": "class", "base": {"name": "digits"}}


@dataclass
class Gap:
    """Old-experience accuracy around one switch, per seed ([S] each)."""

    before: np.ndarray  # at the switch, before the first update on the new experience
    minimum: np.ndarray  # the lowest in the window of updates after the switch
    at: np.ndarray  # updates after the switch at which the minimum is first reached
    final: np.ndarray  # at the end of the new experience's block

    @property
    def recovery(self) -> np.ndarray:
        """How far the minimum lies below the final value: the gap's depth."""
        return self.final - self.minimum

    @property
    def dip(self) -> np.ndarray:
        """How far the accuracy fell from its value at the switch."""
        return self.before - self.minimum


def stability_gap(steps: np.ndarray, values: np.ndarray, start: int, stop: int, window: int) -> Gap:
    """The gap in a curve `values` [S, T] (or [T]) probed at `steps` [T], for a
    switch at step `start` whose block ends at step `stop`: the minimum over
    the probed steps in (start, min(start + window, stop)], against the values
    at `start` and `stop` (both must have been probed)."""
    steps = np.asarray(steps)
    values = np.atleast_2d(np.asarray(values, dtype=float))

    def value_at(step: int) -> np.ndarray:
        index = np.flatnonzero(steps == step)
        if not len(index):
            raise ValueError(f"step {step} was not probed")
        return values[:, index[0]]

    inside = (steps > start) & (steps <= min(start + window, stop))
    if not inside.any():
        raise ValueError(f"no probed step in the {window} updates after the switch at step {start}")
    in_window = values[:, inside]
    first_lowest = in_window.argmin(axis=1)
    return Gap(value_at(start), in_window.min(axis=1), steps[inside][first_lowest] - start, value_at(stop))


def gap_failures(gaps: list[Gap], min_dip: float = MIN_DIP, min_recovery: float = MIN_RECOVERY) -> list[str]:
    """Per seed, why the signature fails ('' where it holds): at every switch
    the old-experience accuracy must fall at least `min_dip` below its value at
    the switch and end at least `min_recovery` above its minimum."""
    failures = []
    for s in range(len(gaps[0].minimum) if gaps else 0):
        why = ""
        for k, gap in enumerate(gaps, 1):
            where = (f"after switch {k}, old-experience accuracy went from {gap.before[s]:.3f} down to "
                     f"{gap.minimum[s]:.3f} and ended at {gap.final[s]:.3f}")
            if not gap.dip[s] >= min_dip:
                why = f"{where}: a dip of {gap.dip[s]:.3f} < {min_dip:g}"
            elif not gap.recovery[s] >= min_recovery:
                why = f"{where}: a recovery of {gap.recovery[s]:.3f} < {min_recovery:g}"
            if why:
                break
        failures.append(why)
    return failures


def old_accuracy(arm: ArmData) -> list[tuple[Block, np.ndarray, np.ndarray]]:
    """Per switch of a stream arm after which some experience is old: the block
    it begins, and the old-experience accuracy (the mean accuracy on the
    experiences met before, other than the one switched to) as (steps [T],
    values [S, T])."""
    stream = Stream.of(arm.record.spec)
    curves = [arm.curve(f"accuracy/test/{j}") for j in range(stream.experiences)]
    steps = curves[0][0]
    found = []
    for block in stream.switches():
        old = {b.experience for b in stream.blocks if b.start < block.start} - {block.experience}
        if old:
            found.append((block, steps, np.mean([curves[j][1] for j in sorted(old)], axis=0)))
    return found


def switch_gaps(arm: ArmData) -> list[Gap]:
    """The gap of the old-experience accuracy at every switch of a stream arm,
    over the window of its `recipe.probe_after_switch` updates."""
    window = arm.record.spec["recipe"]["probe_after_switch"]
    return [stability_gap(steps, values, block.start, block.stop, window)
            for block, steps, values in old_accuracy(arm)]


def stability_gap_experiment(quick: bool) -> Experiment:
    # full: probes every 100 updates and each of the 30 after a switch keep probing within 10% of training
    size, window, every = (StreamSize(5, 100, 4), 25, 25) if quick else (StreamSize(5, 500, 8), 30, 100)
    return stream_experiment(SPLIT_DIGITS, size, strategy("replay", size.experiences), lr=LR, momentum=MOMENTUM,
                             probe_every=every, probe_after_switch=window)


@registry.phenomena.register("stability-gap")
class StabilityGap(Phenomenon):
    summary = ("class-incremental split digits with replay: after every switch, old-class accuracy plunges within "
               "a few updates, then recovers")
    source = "Efficient Continual Pre-training by Mitigating the Stability Gap"
    headline = "accuracy/test"

    def arms(self, quick: bool) -> dict[str, Experiment]:
        return {"replay": stability_gap_experiment(quick)}

    def check(self, arms: dict[str, ArmData]) -> Verdict:
        arm = arms["replay"]
        gaps = switch_gaps(arm)
        if not gaps:
            return self.verdict(arm.seeds, ["the stream has no switch to an experience after another"] * len(arm.seeds),
                                {})
        recovery = np.stack([g.recovery for g in gaps])  # [switches, S]
        dip = np.stack([g.dip for g in gaps])

        def mean(field: str) -> list[float]:
            return np.stack([getattr(g, field) for g in gaps]).mean(axis=0).tolist()

        return self.verdict(arm.seeds, gap_failures(gaps), {
            "smallest dip (before - minimum)": dip.min(axis=0).tolist(),
            "smallest recovery (final - minimum)": recovery.min(axis=0).tolist(),
            "mean dip": dip.mean(axis=0).tolist(),
            "mean recovery": recovery.mean(axis=0).tolist(),
            "mean old accuracy before": mean("before"),
            "mean old accuracy minimum": mean("minimum"),
            "mean old accuracy final": mean("final"),
            "latest minimum (updates after switch)": np.stack([g.at for g in gaps]).max(axis=0).astype(float).tolist(),
        })

    def figures(self, arms: dict[str, ArmData]) -> list:
        from learnscope.report.plots import band_plot, new_figure, plt

        arm = arms["replay"]
        window = arm.record.spec["recipe"]["probe_after_switch"]
        fig, ax = new_figure(7, 4.2)
        colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        for i, (block, steps, values) in enumerate(old_accuracy(arm)):
            shown = (steps >= block.start) & (steps <= block.start + window)
            band_plot(ax, steps[shown] - block.start, values[:, shown], f"switch to experience {block.experience}",
                      colors[i % len(colors)])
        ax.set_xlabel("updates after the switch")
        ax.set_ylabel("accuracy on the earlier experiences")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        ax.set_title("the stability gap (mean over seeds, band: lowest to highest seed)", fontsize=10)
        return [("stability gap: old-experience accuracy after each switch", fig)]
