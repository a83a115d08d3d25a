"""Spec validation and overrides: every form of a spec validates to the same
Experiment, `--set` overrides edit it, and every bad input is one SpecError
line naming the dotted field and what is valid."""

from __future__ import annotations

import math
import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from learnscope import registry
from learnscope.errors import LearnscopeError, SpecError
from learnscope.models.mlp import MLP
from learnscope.models.transformer import Transformer
from learnscope.runner import run_experiment
from learnscope.spec import Experiment, Recipe, apply_override, load_experiment
from learnscope.tasks.gaussian_mixture import GaussianMixture
from learnscope.tasks.modular_arithmetic import ModularArithmetic

SPEC_YAML = """\
task: {name: modular-arithmetic, p: 13, op: "+", train_fraction: 0.5}
model: {name: mlp, embed: 8, hidden: [32, 16], activation: gelu}
recipe: {optimizer: adamw, lr: 0.001, weight_decay: 1.0, betas: [0.9, 0.98], steps: 30, probe_every: 10}
interventions:
  - {name: grokfast, alpha: 0.9}
probes:
  - accuracy
  - {name: loss, splits: [test]}
  - weight_norm
seeds: [0, 2, 5]
"""

SPEC_TOML = """\
seeds = [0, 2, 5]

[task]
name = "modular-arithmetic"
p = 13
op = "+"
train_fraction = 0.5

[model]
name = "mlp"
embed = 8
hidden = [32, 16]
activation = "gelu"

[recipe]
optimizer = "adamw"
lr = 0.001
weight_decay = 1.0
betas = [0.9, 0.98]
steps = 30
probe_every = 10

[[interventions]]
name = "grokfast"
alpha = 0.9

[[probes]]
name = "accuracy"

[[probes]]
name = "loss"
splits = ["test"]

[[probes]]
name = "weight_norm"
"""

SPEC_DICT = {
    "task": {"name": "modular-arithmetic", "p": 13, "op": "+", "train_fraction": 0.5},
    "model": {"name": "mlp", "embed": 8, "hidden": [32, 16], "activation": "gelu"},
    "recipe": {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 1.0, "betas": (0.9, 0.98), "steps": 30,
               "probe_every": 10},
    "interventions": [{"name": "grokfast", "alpha": 0.9}],
    "probes": ["accuracy", {"name": "loss", "splits": ["test"]}, "weight_norm"],
    "seeds": [0, 2, 5],
}

BASE = {
    "task": {"name": "modular-arithmetic", "p": 13},
    "model": {"name": "mlp", "embed": 8, "hidden": [16]},
    "recipe": {"steps": 10},
    "probes": ["accuracy"],
    "seeds": 2,
}


def base(**changes) -> dict:
    return {**BASE, **changes}


# ---------------------------------------------------------------- forms of a spec


def test_yaml_toml_and_dict_validate_to_equal_experiments(tmp_path):
    (tmp_path / "spec.yaml").write_text(SPEC_YAML)
    (tmp_path / "spec.toml").write_text(SPEC_TOML)
    from_yaml = load_experiment(tmp_path / "spec.yaml")
    from_toml = load_experiment(tmp_path / "spec.toml")
    from_dict = Experiment.model_validate(SPEC_DICT)
    assert from_yaml == from_toml == from_dict
    assert from_yaml.to_dict() == from_toml.to_dict() == from_dict.to_dict()
    # the values really arrived (not defaults)
    assert isinstance(from_dict.task, ModularArithmetic) and from_dict.task.p == 13
    assert isinstance(from_dict.model, MLP) and from_dict.model.hidden == [32, 16]
    assert from_dict.recipe.lr == 1e-3 and from_dict.seed_list == [0, 2, 5]
    assert [p.registry_name for p in from_dict.probes] == ["accuracy", "loss", "weight_norm"]
    assert from_dict.probes[1].splits == ["test"]
    assert from_dict.interventions[0].alpha == 0.9


def test_python_objects_form_equals_dict_form():
    from learnscope.interventions.grokfast import Grokfast
    from learnscope.probes.performance import Accuracy, Loss
    from learnscope.probes.weights import WeightNorm
    from learnscope.spec import Recipe

    exp = Experiment(
        task=ModularArithmetic(p=13, op="+", train_fraction=0.5),
        model=MLP(embed=8, hidden=[32, 16], activation="gelu"),
        recipe=Recipe(optimizer="adamw", lr=1e-3, weight_decay=1.0, steps=30, probe_every=10),
        interventions=[Grokfast(alpha=0.9)],
        probes=[Accuracy(), Loss(splits=["test"]), WeightNorm()],
        seeds=[0, 2, 5],
    )
    assert exp == Experiment.model_validate(SPEC_DICT)


def test_to_dict_round_trips():
    exp = Experiment.model_validate(SPEC_DICT)
    raw = exp.to_dict()
    assert raw["task"]["name"] == "modular-arithmetic" and raw["model"]["name"] == "mlp"
    assert Experiment.model_validate(raw) == exp


def test_different_specs_are_not_equal():
    assert Experiment.model_validate(base()) != Experiment.model_validate(base(seeds=3))
    assert Experiment.model_validate(base()) != Experiment.model_validate(
        base(model={"name": "mlp", "embed": 8, "hidden": [17]}))


# ---------------------------------------------------------------- overrides


def test_override_scalar_values():
    exp = Experiment.model_validate(base())
    new = exp.with_overrides(["recipe.lr=3e-4", "task.p=113", "recipe.steps=7"])
    assert new.recipe.lr == pytest.approx(3e-4) and isinstance(new.recipe.lr, float)
    assert new.task.p == 113 and new.recipe.steps == 7
    # the original is untouched
    assert exp.recipe.lr == 1e-3 and exp.task.p == 13


def test_override_list_value():
    new = Experiment.model_validate(base()).with_overrides(["model.hidden=[32,32]"])
    assert new.model.hidden == [32, 32]
    assert new.model.embed == 8  # the rest of the component stays


def test_override_probe_by_index():
    exp = Experiment.model_validate(base(probes=["accuracy", "weight_norm"]))
    new = exp.with_overrides(["probes.0.name=loss"])
    assert [p.registry_name for p in new.probes] == ["loss", "weight_norm"]
    new = exp.with_overrides(["probes.0.splits=[test]"])
    assert new.probes[0].splits == ["test"]


def test_override_component_name_replaces_the_component():
    exp = Experiment.model_validate(base())
    new = exp.with_overrides(["model.name=transformer"])
    assert isinstance(new.model, Transformer)
    assert new.model == Transformer()  # defaults: the MLP's embed/hidden did not leak in
    new = exp.with_overrides(["model.name=transformer", "model.d_model=32", "model.heads=2"])
    assert (new.model.d_model, new.model.heads) == (32, 2)


def test_override_on_component_given_by_name_only():
    exp = Experiment.model_validate(base(model="mlp"))
    assert exp.with_overrides(["model.hidden=[8]"]).model.hidden == [8]


def test_override_of_a_section_the_spec_file_leaves_at_its_defaults(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text("task: {name: modular-arithmetic, p: 13}\nmodel: mlp\n")
    exp = load_experiment(spec, ["recipe.steps=7"])
    assert exp.recipe.steps == 7 and exp.recipe.lr == Experiment.model_fields["recipe"].default.lr


def test_override_seeds_count():
    exp = Experiment.model_validate(base())
    assert exp.with_overrides([], seeds=5).seed_list == [0, 1, 2, 3, 4]
    assert exp.with_overrides(["seeds=[4,7]"]).seed_list == [4, 7]


@pytest.mark.parametrize("item, path, fragment", [
    ("recipe.lr", "--set", "key=value"),
    ("recipee.lr=1", "recipee", "did you mean 'recipe'"),
    ("probes.5.name=loss", "probes.5", "index"),
    ("recipe.lr.x=1", "recipe.lr", "not a section"),
])
def test_bad_override_is_a_spec_error(item, path, fragment):
    raw = Experiment.model_validate(base()).to_dict()
    with pytest.raises(SpecError) as info:
        apply_override(raw, item)
    assert info.value.path == path
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------- errors


def spec_error(raw: dict) -> SpecError:
    with pytest.raises(SpecError) as info:
        Experiment.model_validate(raw)
    message = str(info.value)
    assert "\n" not in message and message.strip() == message and message
    assert message.startswith(f"{info.value.path}: ")
    return info.value


def test_unknown_top_level_key():
    err = spec_error(base(recip={"lr": 1}))
    assert err.path == "recip"
    for key in ("task", "model", "recipe", "interventions", "probes", "seeds"):
        assert key in str(err)
    assert "did you mean 'recipe'" in str(err)


@pytest.mark.parametrize("raw, path, valid, close", [
    (base(task={"name": "modular-arithmetc"}), "task.name",
     ["gaussian-mixture", "modular-arithmetic", "teacher-student"], "modular-arithmetic"),
    (base(model={"name": "mlpp"}), "model.name", ["mlp", "transformer"], "mlp"),
    (base(probes=["acuracy"]), "probes[0].name", ["accuracy", "loss", "weight_norm"], "accuracy"),
    (base(interventions=["grokfat"]), "interventions[0].name", ["grokfast"], "grokfast"),
])
def test_unknown_component_name(raw, path, valid, close):
    err = spec_error(raw)
    assert err.path == path
    for name in valid:
        assert name in str(err)
    assert f"did you mean '{close}'" in str(err)


def test_unknown_component_name_far_from_any_has_no_suggestion():
    err = spec_error(base(model={"name": "zzzzzz"}))
    assert "mlp" in str(err) and "transformer" in str(err)
    assert "did you mean" not in str(err)


@pytest.mark.parametrize("raw, path, valid, close", [
    (base(model={"name": "mlp", "hiden": [3]}), "model.hiden", ["hidden", "embed", "activation"], "hidden"),
    (base(task={"name": "modular-arithmetic", "train_fractoin": 0.3}), "task.train_fractoin",
     ["p", "op", "train_fraction"], "train_fraction"),
    (base(recipe={"lrr": 1}), "recipe.lrr", ["lr", "steps", "optimizer", "batch_size"], "lr"),
    (base(probes=[{"name": "accuracy", "split": ["test"]}]), "probes[0].split", ["splits"], "splits"),
    (base(interventions=[{"name": "grokfast", "lamda": 1}]), "interventions[0].lamda", ["lamb", "alpha"], "lamb"),
])
def test_unknown_component_parameter(raw, path, valid, close):
    err = spec_error(raw)
    assert err.path == path
    assert "unknown key" in str(err)
    for name in valid:
        assert name in str(err)
    assert f"did you mean '{close}'" in str(err)


@pytest.mark.parametrize("raw, path", [
    (base(recipe={"lr": "abc"}), "recipe.lr"),
    (base(recipe={"steps": "many"}), "recipe.steps"),
    (base(recipe={"optimizer": "adagrad"}), "recipe.optimizer"),
    (base(model={"name": "mlp", "hidden": "wide"}), "model.hidden"),
    (base(task={"name": "modular-arithmetic", "p": [3]}), "task.p"),
    (base(seeds="many"), "seeds"),
])
def test_wrong_type(raw, path):
    err = spec_error(raw)
    assert err.path == path or err.path.startswith(path + ".")


@pytest.mark.parametrize("raw, path, given", [
    (base(recipe={"lr": -0.1}), "recipe.lr", "-0.1"),
    (base(recipe={"lr": 0}), "recipe.lr", "0"),
    (base(recipe={"steps": -1}), "recipe.steps", "-1"),
    (base(recipe={"momentum": 1.0}), "recipe.momentum", "1.0"),
    (base(task={"name": "modular-arithmetic", "train_fraction": 0}), "task.train_fraction", "0"),
    (base(task={"name": "modular-arithmetic", "train_fraction": 1.5}), "task.train_fraction", "1.5"),
    (base(seeds=0), "seeds", "0"),
])
def test_out_of_range_value(raw, path, given):
    err = spec_error(raw)
    assert err.path == path
    assert f"(got {given})" in str(err)  # says what was given


def test_more_classes_than_samples():
    err = spec_error(base(task={"name": "gaussian-mixture", "classes": 10, "samples": 5}))
    assert err.path.startswith("task")
    assert "classes" in str(err) and "samples" in str(err) and "10" in str(err) and "5" in str(err)


def test_d_model_not_divisible_by_heads():
    err = spec_error(base(model={"name": "transformer", "d_model": 30, "heads": 4}))
    assert err.path.startswith("model")
    assert "d_model" in str(err) and "heads" in str(err) and "30" in str(err) and "4" in str(err)


def test_warmup_longer_than_steps():
    err = spec_error(base(recipe={"steps": 10, "warmup_steps": 20}))
    assert err.path.startswith("recipe") and "warmup_steps" in str(err)


def test_repeated_seeds():
    err = spec_error(base(seeds=[1, 1]))
    assert err.path == "seeds" and "repeat" in str(err)


def test_component_must_be_name_or_mapping():
    err = spec_error(base(model=3))
    assert err.path == "model" and "mlp" in str(err) and "transformer" in str(err)
    err = spec_error(base(probes="accuracy"))
    assert err.path == "probes" and "list" in str(err)


def test_missing_component_name():
    err = spec_error(base(model={"hidden": [3]}))
    assert err.path == "model.name" and "mlp" in str(err)


def test_spec_error_is_a_learnscope_error_not_a_value_error():
    err = spec_error(base(recipe={"lr": -1}))
    assert isinstance(err, LearnscopeError) and not isinstance(err, ValueError)


def test_trainer_level_checks_are_spec_errors():
    """Checks that need the task (batch larger than the data, probes that
    cannot apply) are SpecErrors too, raised before training."""
    from learnscope.train.trainer import Trainer

    with pytest.raises(SpecError) as info:
        Trainer(Experiment.model_validate(base(recipe={"steps": 5, "batch_size": 100_000})))
    assert info.value.path == "recipe.batch_size"
    with pytest.raises(SpecError) as info:
        Trainer(Experiment.model_validate(base(probes=[{"name": "accuracy", "splits": ["tset"]}])))
    assert info.value.path == "probes[0].splits" and "did you mean 'test'" in str(info.value)


# ---------------------------------------------------------------- files


@pytest.mark.parametrize("name, content, fragment", [
    ("bad.yaml", "a: [1, 2\n", "not valid YAML"),
    ("bad.toml", "task = [\n", "not valid TOML"),
    ("list.yaml", "- 1\n- 2\n", "must hold a mapping"),
])
def test_unreadable_spec_files(tmp_path, name, content, fragment):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(LearnscopeError) as info:
        load_experiment(path)
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_missing_and_binary_spec_files(tmp_path):
    with pytest.raises(LearnscopeError, match="not found"):
        load_experiment(tmp_path / "missing.yaml")
    (tmp_path / "bin.yaml").write_bytes(bytes(range(256)) * 4)
    with pytest.raises(LearnscopeError, match="cannot read"):
        load_experiment(tmp_path / "bin.yaml")
    with pytest.raises(LearnscopeError, match="cannot read"):
        load_experiment(tmp_path)


# ---------------------------------------------------------------- registries


def test_registering_a_duplicate_name_raises():
    reg = registry.Registry("widget")

    @reg.register("a")
    class A:
        pass

    reg.register("a")(A)  # the same object again is harmless
    with pytest.raises(LearnscopeError, match="widget 'a' is registered twice"):

        @reg.register("a")
        class B:
            pass

    assert reg.get("a") is A and reg.names() == ["a"]


def test_duplicate_in_a_global_registry_raises_and_leaves_it_intact():
    class Impostor(GaussianMixture):
        pass

    with pytest.raises(LearnscopeError, match="registered twice"):
        registry.tasks.register("gaussian-mixture")(Impostor)
    assert registry.tasks.get("gaussian-mixture") is GaussianMixture
    assert registry.models.get("mlp") is MLP


def test_registry_get_unknown_name():
    with pytest.raises(SpecError) as info:
        registry.models.get("transformr", "model.name")
    assert info.value.path == "model.name" and "did you mean 'transformer'" in str(info.value)


# ---------------------------------------------------------------- the example spec

EXAMPLE = textwrap.dedent("""\
    task: {name: gaussian-mixture, classes: 10, dim: 32, samples: 4096}
    model: {name: mlp, hidden: [64, 64]}
    recipe: {optimizer: sgd, lr: 0.1, steps: 500, batch_size: 128}
    probes: [accuracy]
    seeds: 16
""")


def test_example_spec_validates_and_runs(tmp_path):
    path = tmp_path / "example.yaml"
    path.write_text(EXAMPLE)
    exp = load_experiment(path)
    assert isinstance(exp.task, GaussianMixture)
    assert (exp.task.classes, exp.task.dim, exp.task.samples) == (10, 32, 4096)
    assert exp.model.hidden == [64, 64]
    assert (exp.recipe.optimizer, exp.recipe.lr, exp.recipe.steps, exp.recipe.batch_size) == ("sgd", 0.1, 500, 128)
    assert exp.seed_list == list(range(16))

    short = load_experiment(path, ["recipe.steps=60", "recipe.probe_every=30", "recipe.probe_log_points=0"])
    run = run_experiment(short, store=tmp_path / "store")
    assert run.status == "finished"
    frame = run.metrics
    assert set(frame["name"]) == {"accuracy/train", "accuracy/test"}
    assert sorted(frame["seed"].unique()) == list(range(16))
    assert sorted(frame["step"].unique()) == [0, 30, 60]
    assert len(frame) == 2 * 16 * 3
    final = run.final()
    test_acc = final[final["name"] == "accuracy/test"]["value"]
    start = frame[(frame["name"] == "accuracy/test") & (frame["step"] == 0)]["value"]
    assert test_acc.mean() > 0.5 > start.mean()  # it learned: chance is 0.1


# ---------------------------------------------------------------- step schedules


@settings(derandomize=True, deadline=None, max_examples=200)
@given(
    steps=st.integers(1, 400),
    probe_every=st.one_of(st.none(), st.integers(1, 500)),
    log_points=st.integers(0, 40),
    checkpoint_every=st.one_of(st.none(), st.integers(1, 500)),
)
def test_schedules_match_their_definition(steps, probe_every, log_points, checkpoint_every):
    """Probe and checkpoint steps, kept as predicates and counts (never lists),
    agree with the definition step by step."""
    recipe = Recipe(steps=steps, probe_every=probe_every, probe_log_points=log_points,
                    checkpoint_every=checkpoint_every)
    log_steps = {min(steps, round(math.exp(i * math.log(steps) / max(log_points - 1, 1)))) for i in range(log_points)}
    probes = {0, steps} | (set(range(0, steps + 1, probe_every)) if probe_every else set()) | log_steps
    assert {s for s in range(steps + 1) if recipe.is_probe_step(s)} == probes
    assert recipe.probe_count() == len(probes)
    checkpoints = {steps} | (set(range(checkpoint_every, steps + 1, checkpoint_every)) if checkpoint_every else set())
    assert {s for s in range(1, steps + 1) if recipe.is_checkpoint_step(s)} == checkpoints
    assert recipe.checkpoint_count() == len(checkpoints)


def test_huge_schedules_cost_nothing_until_run():
    recipe = Recipe(steps=10**12, probe_every=1, checkpoint_every=1)
    assert recipe.probe_count() == 10**12 + 1 and recipe.checkpoint_count() == 10**12
