"""Validated experiment specs.

An Experiment names its components (`{name: mlp, hidden: [64, 64]}`); each
registered component is a pydantic model whose fields are its parameters.
Every way of building a spec (YAML, TOML, dict, Python, `--set`) goes through
`Experiment.model_validate`, and every failure surfaces as one SpecError line
naming the field and what is valid.
"""

from __future__ import annotations

import copy
import json
import math
import re
import tomllib
from collections.abc import Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar, Literal, NamedTuple, get_args

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializeAsAny,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from learnscope import registry
from learnscope.errors import LearnscopeError, SpecError, one_of
from learnscope.optimizers import OPTIMIZERS


def _numeric(annotation: Any) -> bool:
    """Whether a field's type is made of numbers (int, float, lists or tuples of them)."""
    return annotation in (int, float) or any(_numeric(a) for a in get_args(annotation))


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool) or (isinstance(value, (list, tuple)) and any(isinstance(v, bool) for v in value))


class Parameters(BaseModel):
    """Fields a spec sets: unknown keys, true/false for a number and infinite
    or NaN floats are refused (pydantic would take True as 1 and inf as a number)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _booleans_are_not_numbers(cls, value, info):
        if _is_bool(value) and _numeric(cls.model_fields[info.field_name].annotation):
            raise ValueError("expected a number, not true/false")
        return value


class Component(Parameters):
    """Base of every named, parameterized component. `name` selects the class
    in a spec; the remaining keys are the class's fields."""

    registry_name: ClassVar[str] = ""

    @model_serializer(mode="wrap")
    def _with_name(self, handler):
        return {"name": self.registry_name, **handler(self)}

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class TaskSpec(Component):
    pass


class ModelSpec(Component):
    pass


class ProbeSpec(Component):
    pass


class InterventionSpec(Component):
    def runs_read(self) -> dict[str, str]:
        """{field: run} of the runs whose last checkpoint this intervention
        reads (a teacher, a guide): a run id, or "@ARM" for another arm of the
        same phenomenon."""
        return {}


class RunReference(NamedTuple):
    """A run an experiment reads: `source` (a run id or "@ARM") named at `path`
    of the spec, by `init_from` (intervention None) or by an intervention's field."""

    path: str
    source: str
    intervention: int | None = None
    field: str = "init_from"


_COMPONENT_KINDS: dict[str, tuple[registry.Registry, type[Component]]] = {
    "task": (registry.tasks, TaskSpec),
    "model": (registry.models, ModelSpec),
    "probes": (registry.probes, ProbeSpec),
    "interventions": (registry.interventions, InterventionSpec),
}


LossKind = Literal["softmax", "stablemax", "mse"]


class Recipe(Parameters):
    """How training goes. Probe cadence: step 0, the last step, every
    `probe_every` steps, and `probe_log_points` log-spaced steps (grokking
    spans orders of magnitude of steps, so a linear grid wastes probes)."""

    optimizer: str = Field("adamw", description="a name of learnscope.optimizers.OPTIMIZERS")
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    momentum: float = Field(0.0, ge=0, lt=1)
    orthograd: bool = Field(
        False, description="⊥Grad (Prieto et al.): before each step of the optimizer, each parameter's gradient, "
        "per seed, loses its component along the weights and is rescaled to its own norm"
    )
    betas: tuple[float, float] = (0.9, 0.98)
    steps: int = Field(1000, ge=0, description="updates; 0 measures the initialization: the probes at step 0 "
                       "and a checkpoint of it (a frozen random teacher is such a run)")
    loss: LossKind = Field(
        "softmax", description="the loss of classification and sequence tasks: the cross-entropy of the softmax, "
        "or of StableMax (Prieto et al.; computed in float64), or mse: the squared error of the outputs against the "
        "one-hot target, averaged over the classes; regression tasks use mean squared error and refuse the others"
    )
    flush_denormal: bool = Field(
        False, description="while training on a CPU, treat subnormal floats as zero (x86 FTZ/DAZ): a saturated "
        "softmax underflows into subnormals, which CPUs compute up to 10x slower; only values below 1.2e-38 change"
    )
    batch_size: int | None = Field(None, ge=1, description="None: full batch")
    microbatch: int | None = Field(
        None, ge=1, description="examples per seed in one forward/backward pass; larger batches accumulate "
        "gradients over passes (same gradient up to float reassociation, activations that fit in cache). "
        "None: as many as fit a fixed activation budget for the whole ensemble"
    )
    schedule: Literal["constant", "warmup_cosine"] = "constant"
    warmup_steps: int = Field(0, ge=0)
    min_lr_ratio: float = Field(0.0, ge=0, le=1)
    probe_every: int | None = Field(100, ge=1)
    probe_log_points: int = Field(16, ge=0)
    train_split: str = Field("train", min_length=1, description="the split updates draw their batches from")
    probe_after_switch: int = Field(
        0, ge=0, description="streams: also probe each of this many updates after every switch of experience"
    )
    checkpoint_every: int | None = Field(
        1000, ge=1, description="steps between checkpoints (also one at the last step); None: only the last"
    )

    @field_validator("optimizer")
    @classmethod
    def _known_optimizer(cls, optimizer):
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer '{optimizer}'; {one_of(optimizer, OPTIMIZERS)}")
        return optimizer

    @field_validator("betas", mode="before")
    @classmethod
    def _two_betas(cls, betas):
        if isinstance(betas, (list, tuple)) and len(betas) != 2:
            raise ValueError(f"must be two numbers [beta1, beta2], each in [0, 1); got {len(betas)}")
        return betas

    @field_validator("betas")
    @classmethod
    def _betas_in_range(cls, betas):
        if not all(0 <= b < 1 for b in betas):
            raise ValueError("each beta must be in [0, 1)")
        return betas

    @field_validator("warmup_steps")
    @classmethod
    def _warmup_fits(cls, warmup_steps, info):
        steps = info.data.get("steps")
        if steps is not None and warmup_steps > steps:
            raise ValueError(f"must not exceed steps ({steps})")
        return warmup_steps

    # Step schedules are predicates and counts, never lists: a recipe of 10^9 steps
    # probed every step must cost nothing until it runs (and be refused for its size).

    @cached_property
    def log_probe_steps(self) -> frozenset[int]:
        n = self.probe_log_points
        if not n or not self.steps:
            return frozenset()
        return frozenset(
            min(self.steps, round(math.exp(i * math.log(self.steps) / max(n - 1, 1)))) for i in range(n)
        )

    def is_probe_step(self, step: int) -> bool:
        return (step in (0, self.steps) or (self.probe_every is not None and step % self.probe_every == 0)
                or step in self.log_probe_steps)

    def probe_count(self) -> int:
        if not self.steps:
            return 1
        every = self.probe_every or self.steps
        regular = self.steps // every + 1 + (self.steps % every != 0)  # 0, every, 2 every, ..., and the last
        extra = {s for s in self.log_probe_steps if s % every and s != self.steps}
        return regular + len(extra)

    def is_checkpoint_step(self, step: int) -> bool:
        return step == self.steps or (self.checkpoint_every is not None and step % self.checkpoint_every == 0)

    def checkpoint_count(self) -> int:
        if not self.steps:
            return 1
        every = self.checkpoint_every or self.steps
        return self.steps // every + (self.steps % every != 0)


Seeds = int | list[int]
MAX_SEED = 2**63 - 1  # the store keeps seeds as SQLite integers
SEEDS_VALID = f"must be a positive count or a list of distinct seeds, each an integer from 0 to {MAX_SEED}"


class Experiment(BaseModel):
    """Task + Model + Recipe + Interventions + Probes + seeds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    task: SerializeAsAny[TaskSpec]
    model: SerializeAsAny[ModelSpec]
    recipe: Recipe = Recipe()
    interventions: list[SerializeAsAny[InterventionSpec]] = []
    probes: list[SerializeAsAny[ProbeSpec]] = []
    seeds: Seeds = 8
    # a stored run whose last checkpoint the model starts from (its seeds must include
    # these): e.g. unlearning starts from the trained model. In a phenomenon, "@ARM"
    # names another arm of the same run.
    init_from: str | None = Field(None, min_length=1)
    # the models' initial parameters draw from (seed, init_stream) instead of the seed:
    # the same seeds then start from independent initializations with the same data
    init_stream: str | None = Field(None, min_length=1)
    # every seed builds the data of this one seed (the same examples and labels): seeds then
    # differ in initialization and batch order alone, as runs on one dataset do
    data_seed: int | None = Field(None, ge=0, le=MAX_SEED)

    @model_validator(mode="wrap")
    @classmethod
    def _validate_as_one_line(cls, data, handler):
        if isinstance(data, Mapping):
            data = _resolve_components(data)
        try:
            return handler(data)
        except ValidationError as exc:
            raise spec_error_from(exc, model=cls) from None

    @field_validator("seeds", mode="before")
    @classmethod
    def _seeds_are_integers(cls, seeds):
        def integer(s):
            return isinstance(s, int) and not isinstance(s, bool)

        if not (integer(seeds) or (isinstance(seeds, (list, tuple)) and all(integer(s) for s in seeds))):
            raise ValueError(SEEDS_VALID)  # one message, not one per member of the int | list union
        return seeds

    @field_validator("seeds")
    @classmethod
    def _seeds_valid(cls, seeds):
        if isinstance(seeds, int):
            if seeds < 1:
                raise ValueError(SEEDS_VALID)
        else:
            if not seeds:
                raise ValueError("the list of seeds is empty")
            if len(set(seeds)) != len(seeds):
                raise ValueError("seeds repeat")
            if any(not 0 <= s <= MAX_SEED for s in seeds):
                raise ValueError(f"each seed must be an integer from 0 to {MAX_SEED}")
        return seeds

    def runs_read(self) -> list[RunReference]:
        """The runs this experiment reads: `init_from`, then its interventions' (a teacher)."""
        reads = [RunReference("init_from", self.init_from)] if self.init_from is not None else []
        for i, intervention in enumerate(self.interventions):
            for name, source in intervention.runs_read().items():
                reads.append(RunReference(f"interventions[{i}].{name}", source, i, name))
        return reads

    @property
    def seed_list(self) -> list[int]:
        return list(range(self.seeds)) if isinstance(self.seeds, int) else list(self.seeds)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def with_overrides(self, overrides: Sequence[str] = (), seeds: int | None = None) -> Experiment:
        """This experiment with `--set key=value` overrides (and `--seeds`) applied, validated."""
        raw = self.to_dict()
        for item in overrides:
            apply_override(raw, item)
        if seeds is not None:
            raw["seeds"] = seeds
        return Experiment.model_validate(raw)

    def derive(self, updates: Mapping[str, Any]) -> Experiment:
        """This experiment with `updates` ({dotted key: Python value}, as `--set`
        takes them but not parsed from text) applied, validated."""
        raw = self.to_dict()
        for key, value in updates.items():
            set_key(raw, key, value)
        return Experiment.model_validate(raw)


def _resolve_components(data: Mapping) -> dict:
    """Turn `{name: ..., **params}` entries into registered component models,
    raising SpecError with the full path on any problem."""
    data = dict(data)
    unknown = [k for k in data if k not in Experiment.model_fields]
    if unknown:
        k = unknown[0]
        raise SpecError(str(k), f"unknown key; {one_of(k, Experiment.model_fields)}")
    for key, (reg, base) in _COMPONENT_KINDS.items():
        if key not in data:
            if Experiment.model_fields[key].is_required():
                names = ", ".join(reg.names())
                raise SpecError(key, f"missing; a {reg.kind} name or {{name: ..., ...}}; valid: {names}")
            continue
        value = data[key]
        if key in ("probes", "interventions"):
            if not isinstance(value, list):
                raise SpecError(key, "must be a list of component names or {name: ..., ...} entries")
            data[key] = [resolve_component(reg, base, item, f"{key}[{i}]") for i, item in enumerate(value)]
        else:
            data[key] = resolve_component(reg, base, value, key)
    return data


def resolve_component(reg: registry.Registry, base: type[Component], value: Any, path: str) -> Component:
    if isinstance(value, base):
        return value
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, Mapping):
        raise SpecError(path, f"must be a {reg.kind} name or a mapping with 'name'; valid names: {', '.join(reg.names())}")
    params = dict(value)
    if "name" not in params:
        raise SpecError(f"{path}.name", f"missing; valid: {', '.join(reg.names())}")
    cls = reg.get(str(params.pop("name")), f"{path}.name")
    try:
        return cls.model_validate(params)
    except ValidationError as exc:
        raise spec_error_from(exc, prefix=path, model=cls) from None


def spec_error_from(exc: ValidationError, prefix: str = "", model: type[BaseModel] | None = None) -> SpecError:
    """One line from pydantic's first error: the dotted path, what is wrong,
    and for unknown keys the valid keys and a 'did you mean'."""
    err = exc.errors(include_url=False)[0]
    loc = [str(p) for p in err["loc"] if not str(p).startswith("function-")]
    path = ".".join(([prefix] if prefix else []) + loc)
    if err["type"] == "extra_forbidden":
        valid = _fields_at(model or exc.title, loc[:-1])
        key = loc[-1] if loc else ""
        if valid is not None:
            return SpecError(path, f"unknown key; {one_of(key, valid)}")
        return SpecError(path, "unknown key")
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    given = err.get("input")
    if err["type"] not in ("missing",) and not isinstance(given, (dict, list, BaseModel)):
        msg += f" (got {given!r})"
    return SpecError(path, msg)


def _fields_at(model: type[BaseModel] | str, loc: list[str]) -> list[str] | None:
    cls: type[BaseModel] | None = model if isinstance(model, type) else {"Experiment": Experiment}.get(model)
    if cls is None:
        return None
    for part in loc:
        field = cls.model_fields.get(part)
        ann = getattr(field, "annotation", None)
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return None
        cls = ann
    names = [n for n in cls.model_fields]
    return names + (["name"] if issubclass(cls, Component) else [])


# ---------------------------------------------------------------- overrides


class SpecLoader(yaml.SafeLoader):
    """YAML as a spec reads it: safe, and `1e-3` is a float. PyYAML follows YAML 1.1,
    where a float needs a dot (`1.0e-3`), so `lr: 1e-3` or `--grid recipe.lr=1e-3,3e-3`
    gave strings: a spec field coerced them, but a sweep's axis kept text, sorted and
    drew it as text. YAML 1.2's float pattern makes them numbers."""


SpecLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."))


def load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=SpecLoader)  # noqa: S506 - a SafeLoader subclass


def parse_value(text: str) -> Any:
    """`--set` values: YAML scalars and lists (`3`, `true`, `[64, 64]`);
    anything else stays a string for pydantic to coerce or reject."""
    try:
        return load_yaml(text)
    except yaml.YAMLError:
        return text


def apply_override(raw: dict, item: str) -> None:
    """Apply `a.b.c=value` to a spec dict in place. Setting a component's
    `name` replaces the component with that one's defaults, since the old
    component's parameters rarely fit the new one."""
    if "=" not in item:
        raise SpecError("--set", f"'{item}' is not of the form key=value (e.g. recipe.lr=3e-4)")
    key, text = item.split("=", 1)
    set_key(raw, key, parse_value(text))


def split_key(key: str) -> list[str]:
    parts = key.strip().split(".")
    if not all(parts):
        raise SpecError("--set", f"'{key}' is not a dotted key (e.g. task.p)")
    return parts


def set_key(raw: dict, key: str, value: Any) -> None:
    """Set dotted `key` of a spec dict to `value`, in place."""
    parts = split_key(key)
    node: Any = raw
    for i, part in enumerate(parts[:-1]):
        path = ".".join(parts[: i + 1])
        if isinstance(node, list):
            node = node[_list_index(node, part, path)]
            continue
        if part not in node:
            if i == 0 and part not in Experiment.model_fields:
                raise SpecError(path, f"unknown key; {one_of(part, Experiment.model_fields)}")
            node[part] = {}  # a section the spec leaves at its defaults (recipe)
        if isinstance(node[part], str):  # a component given by name only
            node[part] = {"name": node[part]}
        if not isinstance(node[part], (dict, list)):
            raise SpecError(path, f"is a value ({node[part]!r}), not a section")
        node = node[part]
    last = parts[-1]
    if isinstance(node, list):
        node[_list_index(node, last, key)] = value
    elif last == "name" and len(parts) >= 2 and isinstance(node, dict) and node.get("name") != value:
        node.clear()
        node["name"] = value
    else:
        node[last] = value


def get_key(raw: Mapping, key: str, missing: Any = None) -> Any:
    """The value at dotted `key` of a spec dict (a component named by a bare
    string has only its name), `missing` where the path does not exist."""
    node: Any = raw
    for part in split_key(key):
        if isinstance(node, str):
            node = {"name": node}
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, Mapping) and part in node:
            node = node[part]
        else:
            return missing
    return node


def _list_index(node: list, part: str, path: str) -> int:
    if not part.isdigit() or int(part) >= len(node):
        raise SpecError(path, f"index must be an integer below {len(node)}")
    return int(part)


# ---------------------------------------------------------------- files


def load_spec_file(path: str | Path) -> dict:
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise LearnscopeError(f"spec file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise LearnscopeError(f"cannot read spec file {path}: {exc.__class__.__name__}") from None
    try:
        if path.suffix.lower() == ".toml":
            data = tomllib.loads(text)
        elif path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            data = load_yaml(text)
    except (yaml.YAMLError, tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}" if where is not None else ""
        raise LearnscopeError(f"spec file {path} is not valid {_format_name(path)}{at}") from None
    except RecursionError:
        raise LearnscopeError(f"spec file {path} is not a valid spec: nested too deeply") from None
    if not isinstance(data, dict):
        raise LearnscopeError(
            f"spec file {path} must hold a mapping with keys {', '.join(Experiment.model_fields)}"
        )
    return data


def _format_name(path: Path) -> str:
    return {".toml": "TOML", ".json": "JSON"}.get(path.suffix.lower(), "YAML")


def load_experiment(path: str | Path, overrides: Sequence[str] = (), seeds: int | None = None) -> Experiment:
    raw = load_spec_file(path)
    for item in overrides:
        apply_override(raw, item)
    if seeds is not None:
        raw["seeds"] = seeds
    return Experiment.model_validate(raw)


def deep_copy(raw: dict) -> dict:
    return copy.deepcopy(raw)
