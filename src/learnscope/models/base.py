"""What the trainer and the probes need from any model."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import nn

from learnscope.errors import SpecError, one_of
from learnscope.spec import ModelSpec
from learnscope.tasks.base import TaskInfo


class Capture:
    """Collects the activations of the named sites during one forward pass."""

    def __init__(self, wanted: Iterable[str]):
        self.wanted = frozenset(wanted)
        self.acts: dict[str, torch.Tensor] = {}

    def __call__(self, site: str, value: torch.Tensor) -> None:
        if site in self.wanted:
            self.acts[site] = value


class EnsembleModel(nn.Module):
    """S members in lockstep. Inputs and outputs carry the seed axis first:
    x [S, B, ...] -> out [S, B, output_dim]."""

    members: int

    def site_names(self) -> list[str]:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, capture: Capture | None = None) -> torch.Tensor:
        raise NotImplementedError

    # Every model ends in the same head: a stacked linear readout `head` of
    # the penultimate features, times the output scale alpha.
    head: nn.Module
    scale: float = 1.0

    def output(self, features: torch.Tensor, capture: Capture | None) -> torch.Tensor:
        """Readout and output scale, recording the `penultimate` and `logits` sites."""
        if capture is not None:
            capture("penultimate", features)
        out = self.head(features)
        if self.scale != 1.0:
            out = out * self.scale
        if capture is not None:
            capture("logits", out)
        return out

    def readout(self) -> torch.Tensor:
        """The classifier's weights acting on the `penultimate` site, [S, C, D]."""
        return self.head.weight.transpose(1, 2)

    def check_sites(self, sites: Iterable[str], path: str) -> None:
        valid = self.site_names()
        for site in sites:
            if site not in valid:
                raise SpecError(path, f"unknown site '{site}'; {one_of(site, valid)}")


class Model(ModelSpec):
    """A model is a spec (its fields are its parameters) that builds a seed ensemble."""

    def build(self, info: TaskInfo, seeds: Sequence[int]) -> EnsembleModel:
        raise NotImplementedError
