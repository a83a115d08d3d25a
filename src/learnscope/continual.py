"""Continual-learning measures of a stream run, read from its stored
accuracies (so any past run can be re-measured).

The accuracy matrix R[i, j] is the accuracy on experience j's test split
after training on experience i: at the end of the last block before
experience i + 1 is first met (the end of the run for the last one). b[j]
is the accuracy on experience j at step 0, before any training. Per seed:

- average accuracy: mean over j of R[E-1, j];
- backward transfer: mean over j < E-1 of R[E-1, j] - R[j, j] (negative: forgetting);
- forward transfer: mean over j > 0 of R[j-1, j] - b[j] (what earlier experiences did for a new one);
- forgetting: mean over j < E-1 of the largest drop, max over i in j..E-2 of R[i, j] - R[E-1, j].

Lopez-Paz & Ranzato (2017) and Chaudhry et al. (2018) define these; the
catalog's forgetting entries (../shared/catalog.md, family 4) use them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from learnscope.results import ArmData
from learnscope.spec import Experiment
from learnscope.tasks.base import Block

MEASURES = ("average_accuracy", "backward_transfer", "forward_transfer", "forgetting")
# arms of a stream compared: these measures, ranked by average accuracy, then backward transfer
RANKING = {f"continual/{name}": name.replace("_", " ") for name in
           ("average_accuracy", "backward_transfer", "forgetting", "forward_transfer")}
RANK_BY = ("continual/average_accuracy", "continual/backward_transfer")


@dataclass
class Stream:
    """What a stream run's spec says about its schedule."""

    experiences: int
    blocks: list[Block]

    @classmethod
    def of(cls, experiment: Experiment) -> Stream | None:
        blocks = experiment.task.training_blocks(experiment.recipe.steps, experiment.recipe.train_split)
        return cls(experiment.task.info().experiences, blocks) if blocks else None

    def row_steps(self) -> list[int]:
        """The step at which row i of the accuracy matrix is read."""
        first_met = {}
        for index, block in enumerate(self.blocks):
            first_met.setdefault(block.experience, index)
        steps = []
        for i in range(self.experiences):
            following = first_met.get(i + 1)
            steps.append(self.blocks[following].start if following is not None else self.blocks[-1].stop)
        return steps

    def switches(self) -> list[Block]:
        """Blocks that begin a change of experience."""
        return [b for a, b in zip(self.blocks, self.blocks[1:]) if b.experience != a.experience]


def accuracy_matrix(arm: ArmData, stream: Stream) -> tuple[np.ndarray, np.ndarray]:
    """(R [S, E, E], b [S, E]) from the arm's `accuracy/test/j` curves."""
    rows = stream.row_steps()
    R = np.full((len(arm.seeds), stream.experiences, stream.experiences), np.nan)
    b = np.full((len(arm.seeds), stream.experiences), np.nan)
    for j in range(stream.experiences):
        steps, values = arm.curve(f"accuracy/test/{j}")
        at = {int(s): k for k, s in enumerate(steps)}
        if 0 in at:
            b[:, j] = values[:, at[0]]
        for i, step in enumerate(rows):
            if step in at:
                R[:, i, j] = values[:, at[step]]
    return R, b


def measures(R: np.ndarray, b: np.ndarray) -> dict[str, np.ndarray]:
    """The four measures per seed, [S] each."""
    E = R.shape[1]
    last = R[:, E - 1, :]
    diagonal = np.diagonal(R, axis1=1, axis2=2)
    out = {"average_accuracy": last.mean(1)}
    if E > 1:
        out["backward_transfer"] = (last[:, :-1] - diagonal[:, :-1]).mean(1)
        out["forward_transfer"] = np.stack([R[:, j - 1, j] - b[:, j] for j in range(1, E)], 1).mean(1)
        drops = [(R[:, j : E - 1, j] - last[:, j : j + 1]).max(1) for j in range(E - 1)]
        out["forgetting"] = np.stack(drops, 1).mean(1)
    return out


def arm_measures(arm: ArmData) -> dict[str, np.ndarray] | None:
    """The measures of a stream arm that probed `accuracy/test/j` for every j; None otherwise."""
    stream = Stream.of(arm.experiment) if arm.has_experiment else None
    if stream is None:
        return None
    names = set(arm.frame["name"])
    if not all(f"accuracy/test/{j}" in names for j in range(stream.experiences)):
        return None
    return measures(*accuracy_matrix(arm, stream))
