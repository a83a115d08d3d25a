"""A sweep's grid: `--grid [ARM:]key=v1,v2,...` axes, their Cartesian product,
and every trial's spec built and validated before anything is recorded.

Values parse like `--set` values (YAML scalars and lists); they are split on
commas outside brackets and quotes, so `model.hidden=[32],[64, 64]` is two
values, `[32]` and `[64, 64]`.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from learnscope.errors import SpecError
from learnscope.runner import phenomenon_arms
from learnscope.spec import Experiment, apply_override, deep_copy, parse_value
from learnscope.train.memory import check_fits


@dataclass(frozen=True)
class Axis:
    """One swept key: `label` is `key` or `ARM:key`; `texts` the values as given."""

    label: str
    texts: tuple[str, ...]

    @property
    def values(self) -> list[Any]:
        return [parse_value(text) for text in self.texts]

    @property
    def key(self) -> str:
        return self.label.split(":", 1)[-1]

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.label, "values": self.values, "texts": list(self.texts)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Axis:
        return cls(data["key"], tuple(data["texts"]))


@dataclass(frozen=True)
class Trial:
    """One point of the grid: its run id, swept values ({axis label: value}), the
    `--set` overrides that make it, and its validated spec (an Experiment's dict;
    for a phenomenon, {"phenomenon", "quick", "arms"} as its run stores it)."""

    index: int
    run_id: str
    values: dict[str, Any]
    overrides: list[str]
    seeds: list[int]
    spec: dict[str, Any] = field(repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "run_id": self.run_id, "values": self.values, "overrides": self.overrides}


def split_values(text: str) -> list[str]:
    """`0.1,0.3` -> ['0.1', '0.3']; commas inside [], {}, () or quotes stay."""
    parts: list[str] = []
    current: list[str] = []
    depth, quote = 0, ""
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "[{(":
            depth += 1
        elif char in "]})":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    parts.append("".join(current).strip())
    return parts


def parse_grid(items: Sequence[str]) -> list[Axis]:
    """`--grid` options as axes; one line of bad input names the problem."""
    if not items:
        raise SpecError("--grid", "give at least one axis: --grid KEY=V1,V2,... (e.g. --grid recipe.lr=0.03,0.1,0.3)")
    axes: list[Axis] = []
    for item in items:
        if "=" not in item:
            raise SpecError("--grid", f"'{item}' is not of the form key=v1,v2,... or ARM:key=v1,v2,...")
        label, text = item.split("=", 1)
        label = label.strip()
        if not label or label.endswith(":") or label.startswith(":"):
            raise SpecError("--grid", f"'{item}' names no key (e.g. recipe.lr=0.03,0.1)")
        texts = split_values(text)
        if any(t == "" for t in texts):
            raise SpecError("--grid", f"{label}: an empty value in '{text}' (values are separated by commas)")
        if len(set(texts)) != len(texts):
            raise SpecError("--grid", f"{label}: a value is given twice in '{text}'")
        if any(axis.label == label for axis in axes):
            raise SpecError("--grid", f"{label}: the key is swept twice; give its values in one --grid")
        axes.append(Axis(label, tuple(texts)))
    return axes


def points(axes: Sequence[Axis]) -> list[dict[str, tuple[str, Any]]]:
    """The Cartesian product, first axis slowest: {label: (text, value)} per point."""
    return [dict(zip((a.label for a in axes), combo))
            for combo in itertools.product(*[list(zip(a.texts, a.values)) for a in axes])]


def experiment_trials(sweep_id: str, base: dict[str, Any], axes: Sequence[Axis], overrides: Sequence[str],
                      seeds: int | None, device: torch.device | None = None) -> list[Trial]:
    """Every trial of a sweep over a spec file's experiment, validated (and checked
    to fit in `device`'s memory, unless None)."""
    for axis in axes:
        if ":" in axis.label:
            raise SpecError("--grid", f"{axis.label}: ARM:key applies to a phenomenon's arms; a spec file has none")
    trials = []
    for index, point in enumerate(points(axes)):
        raw = deep_copy(base)
        grid = [f"{label}={text}" for label, (text, _) in point.items()]
        for item in [*overrides, *grid]:
            apply_override(raw, item)
        if seeds is not None:
            raw["seeds"] = seeds
        try:
            experiment = Experiment.model_validate(raw)
        except SpecError as exc:
            raise SpecError(f"--grid {_shown(point)}", str(exc)) from None
        if device is not None:
            check_fits([experiment], device, f"trial {index} of the sweep (--grid {_shown(point)})")
        trials.append(Trial(index, f"{sweep_id}.t{index}", {k: v for k, (_, v) in point.items()}, grid,
                            experiment.seed_list, experiment.to_dict()))
    return trials


def phenomenon_trials(sweep_id: str, name: str, quick: bool, axes: Sequence[Axis], overrides: Sequence[str],
                      seeds: int | None, device: torch.device | None = None) -> list[Trial]:
    """Every trial of a sweep over a phenomenon: its arms with `--set` and the
    point's overrides applied, through `phenomenon_arms` (which refuses an arm
    it does not have and a global key that would break the arms), its arms
    checked to fit in `device`'s memory together (unless None)."""
    trials = []
    for index, point in enumerate(points(axes)):
        grid = [f"{label}={text}" for label, (text, _) in point.items()]
        try:
            _, arms = phenomenon_arms(name, quick, seeds, [*overrides, *grid])
        except SpecError as exc:
            raise SpecError(f"--grid {_shown(point)}", str(exc).replace("--set: ", "", 1)) from None
        if device is not None:
            check_fits([a.experiment for a in arms.values()], device,
                       f"trial {index} of the sweep (--grid {_shown(point)}; {len(arms)} arms held together)")
        spec = {"phenomenon": name, "quick": quick, "arms": {arm: a.stored_spec() for arm, a in arms.items()}}
        trials.append(Trial(index, f"{sweep_id}.t{index}", {k: v for k, (_, v) in point.items()},
                            grid, next(iter(arms.values())).experiment.seed_list, spec))
    return trials


def _shown(point: dict[str, tuple[str, Any]]) -> str:
    return " ".join(f"{label}={text}" for label, (text, _) in point.items())
