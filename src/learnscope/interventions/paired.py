"""Seeds in pairs: the ensemble's members pair up in order, (0, 1), (2, 3),
..., and the second of each pair is given its first's data and batches (a
task draws its data per seed). Co-teaching trains such pairs as peers;
`spawn` makes the second a perturbed copy of the first."""

from __future__ import annotations

import torch

from learnscope.errors import SpecError
from learnscope.models.trainer_view import TrainerView


def check_pairs(trainer: TrainerView, path: str, what: str) -> None:
    """Refuse, in one line, seeds that do not pair up."""
    if len(trainer.seeds) % 2:
        raise SpecError(path, f"{what} pairs the seeds in order, (0, 1), (2, 3), ...; {len(trainer.seeds)} seeds "
                        f"leave one without a partner: give an even number")


def share_pair_data(trainer: TrainerView) -> None:
    """Overwrite, in place, every split of each pair's second member with its first's."""
    for split, (x, y) in trainer.data.splits.items():
        x[1::2], y[1::2] = x[0::2].clone(), y[0::2].clone()
        if trainer.info.identities:  # what a vector sequence's positions hold goes with its examples
            ids = trainer.data.identities(split)
            ids[1::2] = ids[0::2].clone()


def share_pair_batch(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The update's batch [S, B, ...] with each pair's second member given its first's."""
    x, y = x.clone(), y.clone()
    x[1::2], y[1::2] = x[0::2], y[0::2]
    return x, y
