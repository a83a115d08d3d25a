"""Bad input is refused before any work, with one clear line.

Property-based: valid base specs (a gaussian-mixture MLP classifier, a
modular-arithmetic MLP, a modular-arithmetic transformer, a teacher-student
regression, each with probes and a grokfast intervention) are mutated into
specs that are invalid by construction, and each one goes through the real
command line in-process (`learnscope run SPEC --store DIR`), which must
answer with exit code 2, exactly one stderr line `error: PATH: ...` naming
the offending field by its dotted path and what is valid, no traceback, and
no run in the store.

How many bad specs: each property test counts the distinct bad inputs it
ran (its draws, plus explicit examples for the out-of-range family) and
asserts at least its quota:

    wrong types 150 + unknown keys 120 + out of range 150
    + unknown names 80 + --set overrides 100 = 600 >= 500

(`test_quotas_add_up` checks the sum). Each test asserts its own count, so
the bar holds however pytest-xdist spreads the tests over workers.
"""

from __future__ import annotations

import copy
import difflib
import functools
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import annotated_types as at
import pytest
import torch
import yaml
from benchmarks.configs import CONFIGS
from benchmarks.ensemble import SEEDS as ENSEMBLE_SEEDS
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from helpers import cli, learnscope, run_count
from learnscope import registry
from learnscope.cli import main
from learnscope.runner import phenomenon_arms
from learnscope.spec import MAX_SEED, Experiment, Recipe, load_spec_file
from learnscope.store.sqlite import Store
from learnscope.train import memory
from learnscope.train.trainer import Trainer

pytestmark = pytest.mark.usefixtures("isolated")

BASES: dict[str, dict] = {
    "gaussian-mlp": {
        "task": {"name": "gaussian-mixture", "classes": 4, "dim": 8, "samples": 64, "test_samples": 32},
        "model": {"name": "mlp", "hidden": [16, 16], "activation": "relu"},
        "recipe": {"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "steps": 50, "batch_size": 16,
                   "probe_every": 10},
        "interventions": [{"name": "grokfast", "alpha": 0.9, "lamb": 2.0}],
        "probes": [{"name": "accuracy"}, {"name": "loss", "splits": ["test"]},
                   {"name": "neural_collapse", "max_examples": 64}],
        "seeds": 3,
    },
    "modular-mlp": {
        "task": {"name": "modular-arithmetic", "p": 13, "op": "+", "train_fraction": 0.5},
        "model": {"name": "mlp", "embed": 8, "hidden": [32], "activation": "gelu"},
        "recipe": {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 1.0, "betas": [0.9, 0.98], "steps": 100,
                   "schedule": "warmup_cosine", "warmup_steps": 10},
        "interventions": [{"name": "grokfast", "filter": "ma", "window": 10}],
        "probes": [{"name": "accuracy", "max_examples": 50}, {"name": "weight_norm"},
                   {"name": "effective_rank", "site": "hidden.0"}],
        "seeds": [0, 4, 7],
    },
    "modular-transformer": {
        "task": {"name": "modular-arithmetic", "p": 11, "op": "/", "train_fraction": 0.4},
        "model": {"name": "transformer", "layers": 2, "d_model": 16, "heads": 4, "d_mlp": 32},
        "recipe": {"optimizer": "adam", "lr": 3e-3, "steps": 40, "probe_log_points": 8},
        "interventions": [{"name": "grokfast"}],
        "probes": [{"name": "accuracy"}, {"name": "kernel_alignment", "site": "resid.1", "split": "train"}],
        "seeds": 2,
    },
    "teacher-student": {
        "task": {"name": "teacher-student", "teacher": "polynomial", "input_dim": 8, "degree": 2, "samples": 64,
                 "test_samples": 32, "noise": 0.1},
        "model": {"name": "mlp", "hidden": [32], "output_scale": 4.0, "mirror_init": True},
        "recipe": {"optimizer": "sgd", "lr": 0.05, "steps": 30, "probe_every": 10},
        "interventions": [{"name": "grokfast", "alpha": 0.5, "lamb": 1.0}],
        "probes": [{"name": "loss"}, {"name": "relative_weight_change"},
                   {"name": "kernel_alignment", "site": "hidden.0"}],
        "seeds": 2,
    },
}

QUOTAS = {"wrong_types": 150, "unknown_keys": 120, "out_of_range": 150, "unknown_names": 80, "overrides": 100}
SETTINGS = dict(derandomize=True, database=None, deadline=None, suppress_health_check=[HealthCheck.too_slow])
KINDS = {"task": registry.tasks, "model": registry.models, "probes": registry.probes,
         "interventions": registry.interventions}
# what str.splitlines() breaks a line at, found independently of the library
LINE_BREAKS = [c for c in map(chr, range(0x3000)) if len(f"a{c}b".splitlines()) > 1]


# ---------------------------------------------------------------- one bad input, through the command line


@dataclass(frozen=True)
class Case:
    """A bad input and what its one error line must say."""

    spec: Any  # the spec file's content
    path: str  # the dotted path the line must name
    must: tuple[str, ...] = ()  # fragments the line must hold, all of them
    any_of: tuple[str, ...] = ()  # fragments of which the line must hold one
    sets: tuple[str, ...] = ()  # --set overrides
    fmt: str = "yaml"
    element: bool = False  # the line may name an element of the field (model.hidden.0)

    def key(self) -> str:
        return json.dumps([self.spec, self.sets, self.fmt], default=repr)


def refused(capsys, spec_file: Path, *options: str) -> str:
    """Run `learnscope run SPEC_FILE` in-process; assert the refusal contract
    and return the error line without its `error: ` prefix."""
    store = spec_file.parent / "store"
    capsys.readouterr()
    code = main(["run", str(spec_file), *options, "--store", str(store), "--no-report"])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert code == 2, (code, out, err)
    assert out == "", out
    lines = err.splitlines()
    assert len(lines) == 1 and err.endswith("\n"), err
    assert lines[0].startswith("error: ") and len(lines[0]) > len("error: x: x"), err
    assert run_count(store) == 0, "a refused spec left a run in the store"
    assert not (Path.cwd() / "learnscope-runs").exists()
    return lines[0][len("error: "):]


def write_spec(directory: Path, spec: Any, fmt: str) -> Path:
    path = directory / f"spec.{fmt}"
    if fmt == "json":
        path.write_text(json.dumps(spec))
    else:
        path.write_text(yaml.safe_dump(spec, sort_keys=False))  # escaped: line breaks in keys survive
    assert repr(load_spec_file(path)) == repr(spec), "the file does not hold the intended spec"
    return path


def escaped(text: str) -> str:
    """User text as a one-line message quotes it: line breaks escaped."""
    return "".join(repr(c)[1:-1] if c in LINE_BREAKS else c for c in text)


def check(capsys, root: Path, case: Case) -> None:
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        spec_file = write_spec(Path(tmp), case.spec, case.fmt)
        line = refused(capsys, spec_file, *(a for s in case.sets for a in ("--set", s)))
    path = escaped(case.path)
    named = line.startswith(f"{path}: ") or (
        case.element and line.startswith(f"{path}.") and line[len(path) + 1:].split(": ", 1)[0].isdigit())
    assert named, (path, line)
    for fragment in case.must:
        assert fragment in line, (fragment, line)
    if case.any_of:
        assert any(f in line for f in case.any_of), (case.any_of, line)


def run_property(capsys, root: Path, strategy, family: str, examples: list[Case] = ()) -> None:
    """Check the explicit examples and every case the strategy draws; assert
    the family's quota of distinct bad inputs ran."""
    seen: set[str] = set()

    @settings(max_examples=QUOTAS[family] * 11 // 10, **SETTINGS)  # headroom for draws that coincide
    @given(strategy)
    def prop(case: Case):
        check(capsys, root, case)
        seen.add(case.key())

    for case in examples:
        prop = example(case)(prop)
    prop()
    assert len(seen) >= QUOTAS[family], f"{family}: only {len(seen)} distinct bad specs"


# ---------------------------------------------------------------- the base specs and their parts


@functools.cache
def facts(base: str) -> dict:
    """What a base spec's refusals mention: training examples, splits, model sites."""
    exp = Experiment.model_validate(BASES[base])
    info = exp.task.info()
    return {"n_train": len(exp.task.build(0).splits["train"]), "splits": sorted(info.splits),
            "sites": sorted(exp.model.build(info, [0]).site_names())}


def dotted(path: tuple) -> str:
    """('probes', 1, 'split') -> 'probes[1].split', as the spec's errors name it."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def mutated(spec: dict, path: tuple, value: Any = None, delete: bool = False) -> dict:
    spec = copy.deepcopy(spec)
    node = spec
    for part in path[:-1]:
        node = node[part]
    if delete:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return spec


def part(spec: dict, path: tuple) -> Any:
    for key in path:
        spec = spec[key]
    return spec


def survives_yaml(text: str) -> bool:
    """`--set` reads values as YAML: whether this text stays the same string."""
    try:
        return yaml.safe_load(text) == text
    except yaml.YAMLError:
        return True


def sections(base: str) -> list[tuple[tuple, type]]:
    """Every parameterized section of a base spec: (path, pydantic class)."""
    spec = BASES[base]
    found = [(("task",), registry.tasks.get(spec["task"]["name"])),
             (("model",), registry.models.get(spec["model"]["name"])), (("recipe",), Recipe)]
    for kind in ("probes", "interventions"):
        found += [((kind, i), KINDS[kind].get(entry["name"])) for i, entry in enumerate(spec[kind])]
    return found


def valid_keys(cls: type) -> list[str]:
    return sorted([*cls.model_fields, *([] if cls is Recipe else ["name"])])


def listing(names) -> str:
    return f"valid: {', '.join(sorted(names))}"


def names_of(key: str) -> str:
    return f"valid names: {', '.join(KINDS[key].names())}"


def section_kind(path: tuple) -> str:
    return KINDS[path[0]].kind


base_names = st.sampled_from(sorted(BASES))
formats = st.sampled_from(["yaml", "json"])


def annotation_parts(annotation) -> tuple[Any, bool]:
    """(the type without None, whether None is allowed)."""
    args = get_args(annotation)
    if type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return rest[0], True
    return annotation, False


# ---------------------------------------------------------------- value pools

JUNK_TEXT = st.sampled_from(["abc", "many", "", " ", "1,5", "0.1.2", "1e", "ten", "[1]", "∞", "x12"]) | st.text(
    "qxz_#@", min_size=1, max_size=6)  # no numbers, no yes/no/on/off
FRACTIONS = st.floats(-1e6, 1e6).filter(lambda x: not x.is_integer())
NUMBERS = st.integers(-10**6, 10**6) | st.floats(-1e6, 1e6)
LISTS = st.lists(st.integers(0, 9), max_size=3)
DICTS = st.dictionaries(st.sampled_from(["a", "lr", "name"]), st.integers(0, 9), max_size=2)
BOOLS = st.booleans()
NONE = st.none()


def with_bad_element(good, bad):
    """A list of good elements with one bad element somewhere."""
    return st.tuples(st.lists(good, max_size=3), bad, st.integers(0, 3)).map(
        lambda t: t[0][: t[2]] + [t[1]] + t[0][t[2]:])


def wrong_values(annotation) -> tuple[Any, tuple[str, ...], tuple[str, ...], bool]:
    """Values of the wrong type for a field: (strategy, must, any_of, element)."""
    kind, optional = annotation_parts(annotation)
    maybe_none = [] if optional else [NONE]
    if kind is bool:
        return (st.one_of(JUNK_TEXT, st.integers().filter(lambda i: i not in (0, 1)), FRACTIONS, LISTS, DICTS,
                          *maybe_none), (), ("valid boolean",), False)
    if kind in (int, float):
        word = "valid integer" if kind is int else "valid number"
        extra = [FRACTIONS] if kind is int else []
        return (st.one_of(JUNK_TEXT, LISTS, DICTS, BOOLS, *extra, *maybe_none), (),
                (word, "expected a number"), False)
    if kind is str or get_origin(kind) is Literal:
        must = tuple(f"'{c}'" for c in get_args(kind)) if get_origin(kind) is Literal else ()
        return (st.one_of(NUMBERS, BOOLS, LISTS, DICTS, *maybe_none), must,
                () if must else ("valid string",), False)
    element = get_args(kind)[0]
    if get_origin(kind) is list and element is int:
        bad = st.one_of(JUNK_TEXT, NONE, DICTS, LISTS, BOOLS, FRACTIONS)
        return (st.one_of(JUNK_TEXT, NUMBERS, DICTS, BOOLS, *maybe_none, with_bad_element(st.integers(1, 64), bad)),
                (), ("valid list", "valid integer", "expected a number"), True)
    if get_origin(kind) is list and element is str:
        bad = st.one_of(NUMBERS, NONE, DICTS, LISTS, BOOLS)
        return (st.one_of(JUNK_TEXT, NUMBERS, DICTS, BOOLS, *maybe_none, with_bad_element(st.just("train"), bad)),
                (), ("valid list", "valid string"), True)
    if get_origin(kind) is tuple:
        bad = st.one_of(JUNK_TEXT, NONE, DICTS, LISTS, BOOLS)
        pairs = st.tuples(st.floats(0, 0.99), bad, st.booleans()).map(lambda t: [t[1], t[0]] if t[2] else [t[0], t[1]])
        return (st.one_of(JUNK_TEXT, NUMBERS, DICTS, BOOLS, *maybe_none, pairs), (),
                ("valid tuple", "valid number", "expected a number"), True)
    raise AssertionError(f"no wrong values for {annotation}")


SEEDS_PHRASE = "must be a positive count or a list of distinct seeds"
WRONG_SEEDS = st.one_of(JUNK_TEXT, FRACTIONS, DICTS, NONE, BOOLS, with_bad_element(
    st.integers(0, 99), st.one_of(JUNK_TEXT, NONE, DICTS, LISTS, BOOLS, FRACTIONS)))


# ---------------------------------------------------------------- 1. wrong types


@st.composite
def wrong_types(draw) -> Case:
    base = draw(base_names)
    spec, fmt = BASES[base], draw(formats)
    target = draw(st.sampled_from(["field", "field", "field", "name", "section", "entry", "list", "seeds", "missing"]))
    if target in ("field", "name"):
        path, cls = draw(st.sampled_from(sections(base)))
        if cls is not Recipe and (target == "name" or not cls.model_fields):
            names = KINDS[path[0]].names()
            value = draw(st.one_of(NUMBERS, BOOLS, LISTS, DICTS, NONE))
            return Case(mutated(spec, path + ("name",), value), dotted(path + ("name",)), (listing(names),), fmt=fmt)
        field = draw(st.sampled_from(sorted(cls.model_fields)))
        values, must, any_of, element = wrong_values(cls.model_fields[field].annotation)
        return Case(mutated(spec, path + (field,), draw(values)), dotted(path + (field,)), must, any_of, fmt=fmt,
                    element=element)
    if target == "section":  # a task, model or recipe that is not a mapping (or a name)
        key = draw(st.sampled_from(["task", "model", "recipe"]))
        if key == "recipe":
            return Case(mutated(spec, (key,), draw(st.one_of(JUNK_TEXT, NUMBERS, BOOLS, LISTS, NONE))), key,
                        any_of=("valid dictionary",), fmt=fmt)
        value = draw(st.one_of(NUMBERS, BOOLS, LISTS, NONE))
        return Case(mutated(spec, (key,), value), key, (f"must be a {key} name or a mapping with 'name'",
                                                         names_of(key)), fmt=fmt)
    if target == "entry":  # a probe or intervention entry that is neither a name nor a mapping
        key = draw(st.sampled_from(["probes", "interventions"]))
        i = draw(st.integers(0, len(spec[key]) - 1))
        value = draw(st.one_of(NUMBERS, BOOLS, LISTS, NONE))
        return Case(mutated(spec, (key, i), value), dotted((key, i)),
                    (f"must be a {KINDS[key].kind} name or a mapping with 'name'", names_of(key)), fmt=fmt)
    if target == "list":  # probes or interventions that are not a list
        key = draw(st.sampled_from(["probes", "interventions"]))
        value = draw(st.one_of(JUNK_TEXT, NUMBERS, BOOLS, DICTS, NONE))
        return Case(mutated(spec, (key,), value), key, ("must be a list of component names",), fmt=fmt)
    if target == "seeds":
        return Case(mutated(spec, ("seeds",), draw(WRONG_SEEDS)), "seeds", (SEEDS_PHRASE,), fmt=fmt)
    key = draw(st.sampled_from(["task", "model"]))  # a required section left out
    return Case(mutated(spec, (key,), delete=True), key, ("missing", listing(KINDS[key].names())), fmt=fmt)


def test_wrong_types(capsys, tmp_path):
    run_property(capsys, tmp_path, wrong_types(), "wrong_types")


# ---------------------------------------------------------------- 2. unknown keys


def typos(word: str):
    """Single-edit near-misses of a word: a letter deleted, inserted, replaced or two swapped."""
    letters = "abcdeilmnoprstu_"
    i = st.integers(0, len(word) - 1)
    return st.one_of(
        i.map(lambda k: word[:k] + word[k + 1:]),
        st.tuples(st.integers(0, len(word)), st.sampled_from(letters)).map(lambda t: word[: t[0]] + t[1] + word[t[0]:]),
        st.tuples(i, st.sampled_from(letters)).map(lambda t: word[: t[0]] + t[1] + word[t[0] + 1:]),
        st.integers(0, len(word) - 2).map(lambda k: word[:k] + word[k + 1] + word[k] + word[k + 2:]),
    )


def closest_is(typo: str, word: str, choices: list[str]) -> bool:
    """`word` is the one clear closest choice to `typo` (what 'did you mean' should name)."""
    def score(c):
        return difflib.SequenceMatcher(None, c, typo).ratio()

    return typo not in choices and all(score(word) > score(c) for c in choices if c != word) and score(word) >= 0.6


@st.composite
def near_miss(draw, choices: list[str]) -> tuple[str, str | None]:
    """(an unknown word, the choice it is a near miss of, or None for a far-off word)."""
    if draw(st.booleans()):
        word = draw(st.sampled_from([c for c in choices if len(c) >= 3]))
        typo = draw(typos(word).filter(lambda t: closest_is(t, word, choices)))
        return typo, word
    far = st.text(min_size=1, max_size=12) | st.tuples(st.text(max_size=4), st.sampled_from(LINE_BREAKS),
                                                        st.text(max_size=4)).map("".join)
    return draw(far.filter(lambda w: w not in choices)), None


@st.composite
def unknown_keys(draw) -> Case:
    base = draw(base_names)
    spec = BASES[base]
    if draw(st.integers(0, 5)) == 0:  # top level
        path, valid = (), sorted(Experiment.model_fields)
    else:
        path, cls = draw(st.sampled_from(sections(base)))
        valid = valid_keys(cls)
    key, meant = draw(near_miss(valid))
    must = ("unknown key", listing(valid)) + ((f"(did you mean '{meant}'?)",) if meant else ())
    return Case(mutated(spec, path + (key,), draw(st.integers(0, 9) | JUNK_TEXT)), dotted(path + (key,)), must,
                fmt=draw(formats))


def test_unknown_keys(capsys, tmp_path):
    run_property(capsys, tmp_path, unknown_keys(), "unknown_keys")


# ---------------------------------------------------------------- 3. out-of-range values


def bound_violations(cls: type, field: str) -> list[tuple[Any, str]]:
    """(values that break one of the field's declared bounds, the bound's wording), from its pydantic metadata."""
    kind, _ = annotation_parts(cls.model_fields[field].annotation)
    ints, floats = kind is int, kind is float
    found = []
    for bound in cls.model_fields[field].metadata:
        if isinstance(bound, at.Gt):
            values = st.integers(max_value=bound.gt) if ints else st.floats(max_value=bound.gt, allow_nan=False)
            found.append((values, f"greater than {bound.gt}"))
        elif isinstance(bound, at.Ge):
            values = (st.integers(max_value=bound.ge - 1) if ints
                      else st.floats(max_value=bound.ge, exclude_max=True, allow_nan=False))
            found.append((values, f"greater than or equal to {bound.ge}"))
        elif isinstance(bound, at.Lt):
            values = st.integers(min_value=bound.lt) if ints else st.floats(min_value=bound.lt)
            found.append((values, f"less than {bound.lt}"))
        elif isinstance(bound, at.Le):
            values = (st.integers(min_value=bound.le + 1) if ints
                      else st.floats(min_value=bound.le, exclude_min=True))
            found.append((values, f"less than or equal to {bound.le}"))
    if floats:
        found = [(v.filter(lambda x: abs(x) != float("inf")), w) for v, w in found]
        found.append((st.sampled_from([float("inf"), float("-inf"), float("nan")]), "finite number"))
    return found


def bounded_fields(base: str) -> list[tuple[tuple, type, str]]:
    return [(path, cls, f) for path, cls in sections(base) for f in cls.model_fields if bound_violations(cls, f)]


def literal_fields(base: str) -> list[tuple[tuple, type, str]]:
    return [(path, cls, f) for path, cls in sections(base) for f in cls.model_fields
            if get_origin(cls.model_fields[f].annotation) is Literal]


def _composite(n: int) -> bool:
    return any(n % d == 0 for d in range(2, int(n**0.5) + 1))


def rules(base: str) -> list[str]:
    """The out-of-range rules that apply to a base spec."""
    spec = BASES[base]
    found = ["bound"] * 8 + ["choice", "warmup", "betas", "batch", "seeds", "probe_split", "duplicate_probe"]
    task, model = spec["task"]["name"], spec["model"]["name"]
    found += {"gaussian-mixture": ["classes", "label_noise"], "modular-arithmetic": ["division", "fraction"],
              "teacher-student": ["regression_probe"]}[task]
    found += ["heads"] if model == "transformer" else ["widths", "mirror"]
    if task != "modular-arithmetic":
        found.append("transformer_on_vectors")
    if any("site" in KINDS["probes"].get(p["name"]).model_fields for p in spec["probes"]):
        found.append("probe_site")
    return found


@st.composite
def out_of_range(draw) -> Case:
    base = draw(base_names)
    spec, fmt, known = BASES[base], draw(formats), facts(base)
    rule = draw(st.sampled_from(rules(base)))

    def case(path: tuple, value: Any, *must: str, at: tuple | None = None, any_of=()) -> Case:
        return Case(mutated(spec, path, value), dotted(at or path), must, any_of, fmt=fmt)

    if rule == "bound":
        path, cls, field = draw(st.sampled_from(bounded_fields(base)))
        values, wording = draw(st.sampled_from(bound_violations(cls, field)))
        return case(path + (field,), draw(values), wording)
    if rule == "choice":
        path, cls, field = draw(st.sampled_from(literal_fields(base)))
        choices = get_args(cls.model_fields[field].annotation)
        value = draw(st.one_of(st.sampled_from(choices).map(str.upper), st.sampled_from(choices).map(lambda c: c + "x"),
                               JUNK_TEXT, st.sampled_from(["adagrad", "tanh", "linear", "cosine", "none", "mse"]))
                     .filter(lambda v: v not in choices))
        return case(path + (field,), value, *(f"'{c}'" for c in choices))
    if rule == "warmup":
        steps = spec["recipe"].get("steps", Recipe().steps)
        if "warmup_steps" in spec["recipe"] and draw(st.booleans()):  # fewer steps than the warmup
            warmup = spec["recipe"]["warmup_steps"]
            steps = draw(st.integers(1, warmup - 1))
            return case(("recipe", "steps"), steps, f"must not exceed steps ({steps})", at=("recipe", "warmup_steps"))
        return case(("recipe", "warmup_steps"), draw(st.integers(steps + 1, steps + 10**6)),
                    f"must not exceed steps ({steps})")
    if rule == "betas":
        beta, outside = st.floats(0, 0.999), st.floats(allow_nan=False, allow_infinity=False).filter(
            lambda b: not 0 <= b < 1)
        if draw(st.booleans()):
            pair = draw(st.permutations([draw(beta), draw(outside)]))
            return case(("recipe", "betas"), list(pair), "each beta must be in [0, 1)")
        betas = draw(st.lists(beta, max_size=5).filter(lambda b: len(b) != 2))
        return case(("recipe", "betas"), betas, "must be two numbers [beta1, beta2], each in [0, 1)")
    if rule == "batch":
        n = known["n_train"]
        return case(("recipe", "batch_size"), draw(st.integers(n + 1, 10**9)), f"exceeds the {n} training examples")
    if rule == "seeds":
        value, wording = draw(st.sampled_from([
            (st.integers(max_value=0), SEEDS_PHRASE),
            (with_bad_element(st.integers(0, 99), st.integers(max_value=-1) | st.integers(min_value=MAX_SEED + 1))
             .filter(lambda s: len(set(s)) == len(s)), f"each seed must be an integer from 0 to {MAX_SEED}"),
            (st.lists(st.integers(0, 99), min_size=1, max_size=4).map(lambda s: s + s[:1]), "seeds repeat"),
            (st.just([]), "the list of seeds is empty"),
        ]))
        return case(("seeds",), draw(value), wording)
    if rule == "classes":
        samples = draw(st.integers(2, 500))
        classes = draw(st.integers(samples + 1, samples + 1000))
        task = {**spec["task"], "classes": classes, "samples": samples}
        return case(("task",), task, f"must be at least classes ({classes})", at=("task", "samples"))
    if rule == "label_noise":
        samples = spec["task"]["samples"]
        noise = draw(st.floats(1e-9, 0.4 / samples) | st.floats(1 - 0.4 / samples, 1))
        return case(("task", "label_noise"), noise, "train_clean and train_noisy must both be non-empty")
    if rule == "division":
        p = draw(st.integers(4, 1000).filter(_composite))
        task = {**spec["task"], "p": p, "op": draw(st.sampled_from(["/", "÷"]))}
        return case(("task",), task, "prime", f"p = {p} is not", at=("task", "op"))
    if rule == "fraction":
        p, op = spec["task"]["p"], spec["task"]["op"]
        n = p * (p - 1 if op in "/÷" else p)
        fraction = draw(st.floats(1e-9, 0.4 / n) | st.floats(1 - 0.4 / n, 1, exclude_max=True))
        return case(("task", "train_fraction"), fraction, f"training examples of {n}; both splits must be non-empty")
    if rule == "heads":
        d_model = spec["model"]["d_model"]
        return case(("model", "heads"), draw(st.integers(1, 4 * d_model).filter(lambda h: d_model % h)),
                    f"must divide d_model ({d_model})")
    if rule == "widths":
        # no hidden layer at all is a linear model, not bad input: a bad width is
        widths = draw(with_bad_element(st.integers(1, 64), st.integers(max_value=0)))
        return case(("model", "hidden"), widths, "every hidden width must be at least 1")
    if rule == "mirror":
        model = {**spec["model"], "mirror_init": True,
                 "hidden": draw(st.lists(st.integers(1, 64), max_size=2)) + [draw(st.integers(0, 31)) * 2 + 1]}
        return case(("model",), model, "mirror_init needs an even last hidden width", at=("model", "mirror_init"))
    if rule == "transformer_on_vectors":
        model = {"name": "transformer", "d_model": draw(st.sampled_from([8, 16, 32])),
                 "layers": draw(st.sampled_from([1, 2]))}
        return case(("model",), model, "'transformer' reads a sequence: token inputs, or vector inputs of shape",
                    at=("model", "name"))
    if rule == "regression_probe":
        name = draw(st.sampled_from(["accuracy", "neural_collapse"]))
        return case(("probes",), spec["probes"] + [{"name": name}], f"{name} needs a classification task",
                    at=("probes", len(spec["probes"])))
    if rule == "duplicate_probe":
        i = draw(st.integers(0, len(spec["probes"]) - 1))
        return case(("probes",), spec["probes"] + [spec["probes"][i]], f"is already measured by probes[{i}]",
                    at=("probes", len(spec["probes"])))
    # probe_site, probe_split: a site or split the model or task does not have
    probes = [(i, p) for i, p in enumerate(spec["probes"])
              if {"site", "split", "splits"} & set(KINDS["probes"].get(p["name"]).model_fields)]
    i, probe = draw(st.sampled_from(probes))
    fields = KINDS["probes"].get(probe["name"]).model_fields
    if rule == "probe_site" and "site" in fields:
        if probe["name"] == "neural_collapse":
            site = draw(st.sampled_from(known["sites"]).filter(lambda s: s != "penultimate"))
            return case(("probes", i, "site"), site, "valid: penultimate")
        site, meant = draw(near_miss(known["sites"]))
        return case(("probes", i, "site"), site, listing(known["sites"]),
                    *([f"(did you mean '{meant}'?)"] if meant else []))
    split, meant = draw(near_miss(known["splits"]))
    suggestion = [f"(did you mean '{meant}'?)"] if meant else []
    if "splits" in fields:
        return case(("probes", i, "splits"), [*known["splits"][:1], split], listing(known["splits"]), *suggestion)
    return case(("probes", i, "split"), split, listing(known["splits"]), *suggestion)


def explicit(base: str, path: tuple, value: Any, *must: str, at: tuple | None = None) -> Case:
    return Case(mutated(BASES[base], path, value), dotted(at or path), must)


# the constraints everyone expects, always among the cases whatever the strategy draws
OUT_OF_RANGE_EXAMPLES = [
    explicit("gaussian-mlp", ("recipe", "lr"), 0, "greater than 0"),
    explicit("modular-mlp", ("recipe", "lr"), -0.001, "greater than 0"),
    explicit("modular-mlp", ("task", "train_fraction"), 0, "greater than 0"),
    explicit("modular-mlp", ("task", "train_fraction"), 1, "less than 1"),
    explicit("modular-transformer", ("task", "train_fraction"), 1.5, "less than 1"),
    explicit("modular-transformer", ("task", "train_fraction"), -0.2, "greater than 0"),
    explicit("gaussian-mlp", ("task", "classes"), 100, "must be at least classes (100)", at=("task", "samples")),
    explicit("gaussian-mlp", ("seeds",), -1, SEEDS_PHRASE),
    explicit("teacher-student", ("seeds",), [3, -1], "each seed must be an integer from 0 to"),
    explicit("teacher-student", ("recipe", "steps"), -1, "greater than or equal to 0"),
    explicit("modular-mlp", ("recipe", "weight_decay"), -0.1, "greater than or equal to 0"),
    explicit("gaussian-mlp", ("recipe", "momentum"), 1.0, "less than 1"),
    explicit("modular-mlp", ("recipe", "betas"), [0.9, 1.0], "each beta must be in [0, 1)"),
    explicit("modular-mlp", ("recipe", "betas"), [-0.1, 0.9], "each beta must be in [0, 1)"),
    explicit("modular-mlp", ("recipe", "warmup_steps"), 101, "must not exceed steps (100)"),
    explicit("gaussian-mlp", ("recipe", "batch_size"), 65, "exceeds the 64 training examples"),
    explicit("modular-transformer", ("model", "heads"), 3, "must divide d_model (16)"),
    explicit("modular-transformer", ("model", "layers"), 9, "less than or equal to 8"),
    explicit("modular-transformer", ("task", "p"), 12, "prime", "p = 12 is not", at=("task", "op")),
    explicit("gaussian-mlp", ("task", "label_noise"), 1.0, "train_clean and train_noisy must both be non-empty"),
    explicit("teacher-student", ("model", "hidden"), [32, 0], "every hidden width must be at least 1"),
]


def test_out_of_range(capsys, tmp_path):
    run_property(capsys, tmp_path, out_of_range(), "out_of_range", OUT_OF_RANGE_EXAMPLES)


# ---------------------------------------------------------------- 4. unknown component names


@st.composite
def unknown_names(draw) -> Case:
    base = draw(base_names)
    spec = BASES[base]
    paths = [("task",), ("model",)] + [(k, i) for k in ("probes", "interventions") for i in range(len(spec[k]))]
    path = draw(st.sampled_from(paths))
    names = KINDS[path[0]].names()
    others = [n for reg in KINDS.values() for n in reg.names() if n not in names]
    name, meant = draw(near_miss(names) | st.tuples(st.sampled_from(others), st.none()))
    must = (f"unknown {section_kind(path)} '{escaped(name)}'", listing(names))
    must += (f"(did you mean '{meant}'?)",) if meant else ()
    # the component by name alone (`model: mlpp`) or as a mapping keeping its parameters
    value = name if draw(st.booleans()) else {**part(spec, path), "name": name}
    return Case(mutated(spec, path, value), dotted(path + ("name",)), must, fmt=draw(formats))


def test_unknown_component_names(capsys, tmp_path):
    run_property(capsys, tmp_path, unknown_names(), "unknown_names")


# ---------------------------------------------------------------- 5. --set overrides

VALID_SETS = ["recipe.steps=20", "recipe.lr=0.01", "seeds=2", "recipe.probe_every=5", "recipe.probe_log_points=4"]


def set_key(path: tuple) -> str:
    return ".".join(map(str, path))


@st.composite
def overrides(draw) -> Case:
    base = draw(base_names)
    spec = BASES[base]
    prefix = tuple(draw(st.lists(st.sampled_from(VALID_SETS), max_size=2, unique=True)))
    rule = draw(st.sampled_from(["no_equals", "bad_key", "unknown_section", "section_value", "leaf_value",
                                 "not_a_section", "bad_index", "unknown_key", "unknown_name"]))

    def case(item: str, path: str, *must: str, any_of=(), element=False) -> Case:
        return Case(spec, path, must, any_of, sets=prefix + (item,), fmt=draw(formats), element=element)

    if rule == "no_equals":
        item = draw(st.sampled_from(["recipe.lr", "task.p", "seeds", "recipe", ""])
                    | st.text("abcdefgpr._ ", max_size=12))
        return case(item, "--set", f"'{item}' is not of the form key=value")
    if rule == "bad_key":
        key = draw(st.sampled_from(["", " ", ".", ".lr", "recipe.", "recipe..lr", "task..p", ".."]))
        return case(f"{key}={draw(st.sampled_from(['1', 'abc', '']))}", "--set", "is not a dotted key")
    if rule == "unknown_section":
        section, meant = draw(near_miss(sorted(Experiment.model_fields)).filter(
            lambda t: t[0].isidentifier()) | st.tuples(st.from_regex(r"[a-z][a-z0-9_]{0,9}", fullmatch=True)
                                                       .filter(lambda s: s not in Experiment.model_fields), st.none()))
        tail = draw(st.sampled_from([".x", ".lr", ".name", ""]))
        return case(f"{section}{tail}=1", section, "unknown key", listing(Experiment.model_fields),
                    *([f"(did you mean '{meant}'?)"] if meant else []))
    if rule == "section_value":
        section = draw(st.sampled_from(["task", "model", "recipe", "probes", "interventions"]))
        if section == "recipe":
            return case(f"recipe={draw(st.sampled_from(['3', 'abc', '[1, 2]', '', 'true']))}", "recipe",
                        any_of=("valid dictionary",))
        if section in ("probes", "interventions"):
            value = draw(st.sampled_from(["3", "abc", "{a: 1}", "", "true", "2.5"]))
            return case(f"{section}={value}", section, "must be a list of component names")
        value = draw(st.sampled_from(["3", "[1, 2]", "", "true", "2.5", "[]"]))
        return case(f"{section}={value}", section, f"must be a {section} name or a mapping with 'name'",
                    names_of(section))
    if rule == "not_a_section":  # apply_override names the key as --set spells it
        path, field = draw(st.sampled_from([(p, f) for p, _, f in bounded_fields(base) if f in part(spec, p)]))
        key = set_key(path + (field,))
        return case(f"{key}.x=1", key, "is a value", "not a section")
    if rule == "leaf_value":
        path, cls, field = draw(st.sampled_from(bounded_fields(base)))
        kind, optional = annotation_parts(cls.model_fields[field].annotation)
        texts = ["abc", "[1, 2]", "{a: 1}", "true", "false", "1,5", "x y", "0.1.2"] + ([] if optional else ["", "~"])
        texts += [".inf", "-.inf", ".nan"] if kind is float else ["2.5"]
        values, wording = draw(st.sampled_from(bound_violations(cls, field)))
        text = draw(st.sampled_from(texts) | values.map(lambda v: yaml.safe_dump(v).splitlines()[0]))
        return case(f"{set_key(path + (field,))}={text}", dotted(path + (field,)),
                    any_of=("valid number", "valid integer", "expected a number", "finite number", wording))
    if rule == "bad_index":
        key = draw(st.sampled_from(["probes", "interventions"]))
        n = len(spec[key])
        index = draw(st.integers(n, 10**6).map(str) | st.sampled_from(["x", "-1", "first", "0x1"]))
        return case(f"{key}.{index}.name=loss", f"{key}.{index}", f"index must be an integer below {n}")
    if rule == "unknown_key":
        path, cls = draw(st.sampled_from(sections(base)))
        key, meant = draw(near_miss(valid_keys(cls)).filter(lambda t: t[0].isidentifier()))
        return case(f"{set_key(path)}.{key}=1", dotted(path + (key,)), "unknown key", listing(valid_keys(cls)),
                    *([f"(did you mean '{meant}'?)"] if meant else []))
    path = draw(st.sampled_from([("task",), ("model",)] + [(k, i) for k in ("probes", "interventions")
                                                          for i in range(len(spec[k]))]))
    names = KINDS[path[0]].names()
    name, meant = draw(near_miss(names).filter(lambda t: survives_yaml(t[0])))
    return case(f"{set_key(path)}.name={name}", dotted(path + ("name",)),
                f"unknown {section_kind(path)} '{escaped(name)}'", listing(names),
                *([f"(did you mean '{meant}'?)"] if meant else []))


def test_set_overrides(capsys, tmp_path):
    run_property(capsys, tmp_path, overrides(), "overrides")


# ---------------------------------------------------------------- the bar, and the bases are valid


def test_quotas_add_up():
    assert sum(QUOTAS.values()) >= 500


@pytest.mark.parametrize("base", sorted(BASES))
def test_base_specs_are_valid(base):
    """Every refusal above comes from its mutation: unmutated, each base spec
    validates and builds its trainer (data, model, probe checks) without training."""
    from learnscope.train.trainer import Trainer

    for fmt in ("yaml", "json"):
        with tempfile.TemporaryDirectory() as tmp:
            path = write_spec(Path(tmp), BASES[base], fmt)
            assert Trainer(Experiment.model_validate(load_spec_file(path))).step == 0
    assert facts(base)["n_train"] > 0


# ---------------------------------------------------------------- unreadable spec files

DEEP = 50_000
BAD_FILES = {
    "garbage.yaml": (b"this is not a spec at all\n", "must hold a mapping"),
    "garbage.json": (b"{task: mlp,, ]", "is not valid JSON"),
    "garbage.toml": (b"[[[ nope = \n", "is not valid TOML"),
    "yaml-syntax.toml": (b"task: {name: gaussian-mixture}\nmodel: mlp\n", "is not valid TOML"),
    "yaml-list-syntax.toml": (b"probes:\n  - accuracy\n", "is not valid TOML"),
    "binary.json": (bytes(range(256)) * 4, "cannot read spec file"),
    "binary.toml": (bytes(range(256)) * 4, "cannot read spec file"),
    "nul.yaml": (b"task: \x00\x01\x02\n", "is not valid YAML"),
    "nul.json": (b"\x00\x01\x02", "is not valid JSON"),
    "nul.toml": (b"task = \x00\n", "is not valid TOML"),
    "top-list.json": (b'[{"task": "gaussian-mixture", "model": "mlp"}]', "must hold a mapping"),
    "top-list.yaml": (b"- task: gaussian-mixture\n  model: mlp\n", "must hold a mapping"),
    "top-scalar.yaml": (b"42\n", "must hold a mapping"),
    "top-scalar.json": (b'"task: gaussian-mixture"', "must hold a mapping"),
    "top-null.json": (b"null", "must hold a mapping"),
    "empty.yaml": (b"", "must hold a mapping"),
    "comment-only.yml": (b"# nothing here\n\n", "must hold a mapping"),
    "empty.json": (b"", "is not valid JSON"),
    "empty.toml": (b"", "task: missing; a task name or {name: ..., ...}; valid: " + ", ".join(registry.tasks.names())),
    "two-documents.yaml": (b"task: gaussian-mixture\n---\nmodel: mlp\n", "is not valid YAML at line 2"),
    "python-tag.yaml": (b"task: !!python/object/apply:os.system [echo]\n", "is not valid YAML at line 1"),
    "deep.json": (b"[" * DEEP + b"]" * DEEP, "nested too deeply"),
    "deep.yaml": (b"[" * DEEP + b"]" * DEEP, "nested too deeply"),
    "deep.toml": (b"a = " + b"[" * DEEP + b"]" * DEEP, "nested too deeply"),
    "dir.json": (None, "cannot read spec file"),
    "dir.toml": (None, "cannot read spec file"),
    "dir.yml": (None, "cannot read spec file"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_unreadable_spec_file(capsys, tmp_path, name):
    content, fragment = BAD_FILES[name]
    path = tmp_path / name
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    line = refused(capsys, path)
    assert fragment in line, line
    if not fragment.startswith("task:"):
        assert str(path) in line, line


def test_line_breaks_in_user_text_stay_on_one_line(capsys, tmp_path):
    """Keys, names and sites are quoted back to the user; every kind of line
    break in them is escaped, never printed."""
    for brk in LINE_BREAKS:
        for spec, path in [
            (mutated(BASES["gaussian-mlp"], (f"reci{brk}pe",), 1), f"reci{brk}pe"),
            (mutated(BASES["gaussian-mlp"], ("model", "name"), f"ml{brk}p"), "model.name"),
            (mutated(BASES["modular-mlp"], ("probes", 2, "site"), f"hidden{brk}0"), "probes[2].site"),
        ]:
            check(capsys, tmp_path, Case(spec, path, (escaped(f"x{brk}y")[1:-1],), fmt="json"))


# ---------------------------------------------------------------- sizes no machine can allocate

TOO_BIG = {  # each fails at once (beyond any address space), so the test never allocates for real
    "seed count": (("seeds",), 2**62),
    "seed count past the index range": (("seeds",), 10**20),
    "hidden width": (("model", "hidden"), [10**15]),
    "samples": (("task", "samples"), 10**16),
}


@pytest.mark.parametrize("name", sorted(TOO_BIG))
def test_sizes_too_large_to_allocate(capsys, tmp_path, name):
    path, value = TOO_BIG[name]
    with tempfile.TemporaryDirectory(dir=tmp_path) as tmp:
        refused(capsys, write_spec(Path(tmp), mutated(BASES["gaussian-mlp"], path, value), "yaml"))


# ---------------------------------------------------------------- sizes past memory

# the plain classifier of issue 15: per seed 0.7 MB of data and 28 KB of parameters
CLASSIFIER = {
    "task": {"name": "gaussian-mixture", "classes": 10, "dim": 32, "samples": 4096},
    "model": {"name": "mlp", "hidden": [64, 64]},
    "recipe": {"optimizer": "sgd"},
}
REFUSAL_SECONDS = 10  # the bar for refusing a size past memory, as a whole `learnscope run` process
TOO_BIG_LINE = "does not fit in memory: it needs about "


def assert_past_memory(line: str, *fragments: str) -> None:
    """The refusal names what does not fit, the estimate, what is available and what to reduce."""
    assert TOO_BIG_LINE in line and " is available (" in line, line
    assert line.endswith("; reduce seeds, model widths or samples"), line
    for fragment in fragments:
        assert fragment in line, (fragment, line)


@pytest.mark.slow
@pytest.mark.parametrize("seeds", [100_000_000, 100_000])
def test_seed_counts_past_memory_are_refused_at_once(tmp_path, seeds):
    experiment = Experiment.model_validate({**CLASSIFIER, "seeds": seeds})
    available = memory.host_available()
    assert available is not None
    if seeds < 10**6 and memory.estimate(experiment).total() <= available[0]:
        pytest.skip(f"this machine has room for {seeds} seeds of the classifier ({available[0] / 2**30:.0f} GiB)")
    spec = write_spec(tmp_path, {**CLASSIFIER, "seeds": seeds}, "yaml")
    start = time.monotonic()
    done = learnscope("run", spec, "--store", tmp_path / "store", "--no-report")
    elapsed = time.monotonic() - start
    assert done.returncode == 2 and done.stdout == "", (done.returncode, done.stdout, done.stderr[-2000:])
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: the experiment "), done.stderr
    assert_past_memory(lines[0], f"for {seeds:,} seeds")
    assert elapsed < REFUSAL_SECONDS, f"refused after {elapsed:.1f} s"
    assert run_count(tmp_path / "store") == 0


def test_a_model_too_wide_for_memory_is_refused_from_its_shapes(capsys, tmp_path, monkeypatch):
    # 10^12 parameters per seed: counted on the meta device, never allocated (an allocation is refused here)
    monkeypatch.setattr(memory, "estimate", lambda experiment: pytest.fail("built a trainer of a model past memory"))
    line = refused(capsys, write_spec(tmp_path, mutated(BASES["gaussian-mlp"], ("model", "hidden"),
                                                          [1_000_000, 1_000_000]), "yaml"))
    assert_past_memory(line, "parameters 21.8 TiB", "for 3 seeds")  # 3 seeds x 2 copies x 4 TB


@pytest.mark.parametrize("argv", [
    ["run", "grokking", "--quick", "--seeds", "100000000"],
    ["verify", "grokking", "--quick", "--seeds", "100000000"],
    ["sweep", "grokking", "--quick", "--seeds", "100000000", "--grid", "recipe.lr=0.001,0.01"],
], ids=["run", "verify", "sweep"])
def test_phenomena_past_memory_are_refused_before_any_work(capsys, tmp_path, argv):
    code, out, err = cli(capsys, *argv, "--store", tmp_path / "store")
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in out + err, (code, out, err)
    assert "2 arms, held together" in err or "2 arms held together" in err, err
    assert_past_memory(err.strip(), "for 100,000,000 seeds")
    assert run_count(tmp_path / "store") == 0


def test_a_sweep_with_a_trial_past_memory_records_nothing(capsys, tmp_path):
    spec = write_spec(tmp_path, BASES["gaussian-mlp"], "yaml")
    code, out, err = cli(capsys, "sweep", spec, "--grid", "model.hidden=[16],[1000000, 1000000]",
                         "--store", tmp_path / "store")
    assert code == 2 and err.count("\n") == 1, (code, out, err)
    assert_past_memory(err.strip(), "trial 1 of the sweep (--grid model.hidden=[1000000, 1000000])")
    assert run_count(tmp_path / "store") == 0


@pytest.mark.parametrize("target", ["spec", "unlearning-privacy"])
def test_resume_past_memory_is_refused_and_leaves_the_run_as_it_was(capsys, tmp_path, monkeypatch, target):
    store_dir = tmp_path / "store"
    what = str(write_spec(tmp_path, BASES["gaussian-mlp"], "yaml")) if target == "spec" else target
    code, _, err = cli(capsys, "run", what, *(["--quick"] if target != "spec" else []), "--run-id", "k",
                       "--store", store_dir, "--no-report")
    assert code == 0, err
    store = Store(store_dir)
    for run_id in ["k", *(child.id for child in store.children("k"))]:  # a phenomenon's arms are left to train
        store.set_status(run_id, "interrupted", "interrupted for the test")
    events = store.events("k")
    monkeypatch.setattr(memory, "host_available", lambda: (2**10, "a test's limit"))
    code, out, err = cli(capsys, "resume", "k", "--store", store_dir, "--no-report")
    assert code == 2 and err.count("\n") == 1, (code, out, err)
    assert_past_memory(err.strip(), "and 1.0 KiB is available (a test's limit)")
    assert store.get_run("k").status == "interrupted" and store.events("k") == events


def held_tensors(trainer: Trainer) -> dict[str, list[torch.Tensor]]:
    """Every tensor a trainer holds between updates, by the estimate's parts, read off the trainer."""
    optimizer = [t for state in trainer.optimizer.state.values() for t in state.values() if torch.is_tensor(t)]
    return {"parameters": [*trainer.model.parameters(), *trainer.model.buffers(), *trainer.initial_params],
            "gradients": [p.grad for p in trainer.params if p.grad is not None],
            "optimizer": optimizer,
            "interventions": [t for iv in trainer.interventions for t in iv.state_dict().values()],
            "data": [t for pair in trainer.data.splits.values() for t in pair] + [trainer.sampler._perms]}


def storage_bytes(tensors: list[torch.Tensor]) -> int:
    return sum({t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}.values())


SMALL = {"task": {"name": "gaussian-mixture", "classes": 4, "dim": 16, "samples": 512, "test_samples": 128},
         "model": {"name": "mlp", "hidden": [48, 48]},
         "recipe": {"optimizer": "adam", "lr": 1e-3, "batch_size": 32, "steps": 4},
         "interventions": [{"name": "grokfast"}], "probes": ["accuracy", "loss"], "seeds": 12}


def test_the_estimate_matches_what_a_trainer_holds():
    """Each held part of the estimate against the tensors of a 12-seed trainer after two
    updates (gradients, Adam's moments and Grokfast's average exist by then): within 2%."""
    need = memory.estimate(Experiment.model_validate(SMALL))
    trainer = Trainer(Experiment.model_validate(SMALL))
    trainer.train_step()
    trainer.train_step()
    for part, tensors in held_tensors(trainer).items():
        measured = storage_bytes(tensors)
        assert measured > 0 and abs(getattr(need, part) / measured - 1) < 0.02, (part, getattr(need, part), measured)


PEAK_RSS = """
import json, resource, sys
from learnscope.spec import Experiment
from learnscope.store.checkpoints import write_checkpoint
from learnscope.store.memory import MemoryStore
from learnscope.train import memory
from learnscope.train.trainer import Trainer
experiment = Experiment.model_validate(json.loads(sys.argv[1]))
need = memory.estimate(experiment)  # loads every library the training below uses
before = int(open("/proc/self/statm").read().split()[1]) * resource.getpagesize()
trainer = Trainer(experiment)
store = MemoryStore()
trainer.run(on_checkpoint=lambda step: write_checkpoint(store, "r", *trainer.state()),
            on_probe=lambda step, metrics: None)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"estimate": need.total(), "growth": peak - before}))
"""


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="reads the process's memory from /proc")
def test_the_estimate_matches_the_peak_memory_of_a_run():
    """The estimate against the growth of a training process's peak resident memory
    (building, probe steps, updates, a checkpoint): within a factor 1.25 either way."""
    spec = {**CLASSIFIER, "recipe": {"optimizer": "sgd", "momentum": 0.9, "batch_size": 128, "steps": 3,
                                     "probe_every": 3, "checkpoint_every": 3},
            "probes": ["accuracy", "loss"], "seeds": 160}
    done = subprocess.run([sys.executable, "-c", PEAK_RSS, json.dumps(spec)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    figures = json.loads(done.stdout.splitlines()[-1])
    assert figures["growth"] > 200 * 2**20, figures  # large enough to dwarf the interpreter's own noise
    assert 0.8 < figures["estimate"] / figures["growth"] < 1.25, figures


@pytest.mark.parametrize("name", registry.phenomena.names())
def test_every_full_size_phenomenon_fits_in_memory(name):
    """The estimate refuses nothing that runs today: every phenomenon at full size
    (its quick size runs in the suite) fits, all arms held together."""
    _, arms = phenomenon_arms(name)
    need = memory.MemoryNeed.together(memory.estimate(a.experiment) for a in arms.values())
    available = memory.host_available()
    assert available is not None and need.total() < available[0], (name, need.largest_parts(9), available)


@pytest.mark.parametrize("config", CONFIGS, ids=[c.name for c in CONFIGS])
def test_the_benchmark_configs_fit_in_memory(config):
    seeds = max(ENSEMBLE_SEEDS)
    need = memory.estimate(config.experiment(seeds))
    available = memory.host_available()
    assert available is not None and need.total() < available[0], (config.name, need.largest_parts(9))
