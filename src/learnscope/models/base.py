"""What the trainer and the probes need from any model."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

import torch
from torch import nn

from learnscope.errors import SpecError, one_of
from learnscope.spec import ModelSpec
from learnscope.tasks.base import TaskInfo

# An edit of a site: the activation of the seeds of one forward pass, seed axis first,
# in; its replacement, of the same shape, out.
Edit = Callable[[torch.Tensor], torch.Tensor]


def then(first: Edit, second: Edit) -> Edit:
    """The edit that applies `first`, then `second`."""
    return lambda value: second(first(value))


def selected(value: torch.Tensor, axis: int, indices: Sequence[int]) -> torch.Tensor:
    """A bool mask broadcastable to `value`: True at `indices` along `axis` (heads, units)."""
    chosen = torch.zeros(value.shape[axis], dtype=torch.bool, device=value.device)
    chosen[list(indices)] = True
    return chosen.view(*([1] * axis), -1, *([1] * (value.dim() - axis - 1)))


class Sites:
    """The hook points of one forward pass, which read and write. A model
    passes each site's activation through `sites(name, value)` and goes on
    with what it returns: a site with an edit is replaced by `edit(value)`,
    and a site asked for in `read` is recorded (after its edit) in `acts`.
    Edits see all S seeds at once (the seed axis first) and keep the shape."""

    def __init__(self, read: Iterable[str] = (), edits: Mapping[str, Edit] | None = None):
        self.wanted = frozenset(read)
        self.edits = dict(edits or {})
        self.acts: dict[str, torch.Tensor] = {}

    def __call__(self, site: str, value: torch.Tensor) -> torch.Tensor:
        edit = self.edits.get(site)
        if edit is not None:
            value = edit(value)
        if site in self.wanted:
            self.acts[site] = value
        return value

    def touches(self, site: str) -> bool:
        """Whether the pass must compute `site` in full (it is read or edited)."""
        return site in self.wanted or site in self.edits


class EnsembleModel(nn.Module):
    """S members in lockstep. Inputs and outputs carry the seed axis first:
    x [S, B, ...] -> out [S, B, output_dim]."""

    members: int
    # parameters that `init_from` leaves at their own initialization: the
    # adapters added on top of a pretrained model (models/lora.py)
    fresh: frozenset[str] = frozenset()

    def site_names(self) -> list[str]:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, sites: Sites | None = None) -> torch.Tensor:
        raise NotImplementedError

    # Every model ends in the same head: a stacked linear readout `head` of
    # the penultimate features, times the output scale alpha.
    head: nn.Module
    scale: float = 1.0

    def output(self, features: torch.Tensor, sites: Sites | None) -> torch.Tensor:
        """Readout and output scale, through the `penultimate` and `logits` sites."""
        if sites is not None:
            features = sites("penultimate", features)
        out = self.head(features)
        if self.scale != 1.0:
            out = out * self.scale
        if sites is not None:
            out = sites("logits", out)
        return out

    def readout(self) -> torch.Tensor:
        """The classifier's weights acting on the `penultimate` site, [S, C, D]."""
        return self.head.weight.transpose(1, 2)

    def check_sites(self, sites: Iterable[str], path: str) -> None:
        valid = self.site_names()
        for site in sites:
            if site not in valid:
                raise SpecError(path, f"unknown site '{site}'; {one_of(site, valid)}")

    def head_axis(self, site: str) -> int | None:
        """The axis of `site`'s activation (seed and batch axes counted) that indexes
        attention heads, so that an edit can select heads; None: the site has none."""
        return None

    @torch.no_grad()
    def site_shapes(self, x: torch.Tensor) -> dict[str, tuple[int, ...]]:
        """Every site's activation shape per member and example (the seed and batch
        axes dropped), from one dry forward pass over the inputs `x` [S, B, ...] with
        every site read: what an edit of a site receives, and what `units` index."""
        sites = Sites(read=self.site_names())
        was_training = self.training
        self.eval()
        try:
            self(x, sites)
        finally:
            self.train(was_training)
        return {site: tuple(sites.acts[site].shape[2:]) for site in self.site_names() if site in sites.acts}


class Model(ModelSpec):
    """A model is a spec (its fields are its parameters) that builds a seed ensemble."""

    def build(self, info: TaskInfo, seeds: Sequence[int]) -> EnsembleModel:
        raise NotImplementedError
