"""The catalog contract: signatures as claims, thresholds as data, arms as
typed data with per-arm overrides, registration by discovery and plugins,
and the README's component tables kept to the registries."""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from learnscope import registry
from learnscope.catalog.base import Arm, arm_table
from learnscope.errors import LearnscopeError, SpecError
from learnscope.results import Signature, Threshold
from learnscope.runner import phenomenon_arms, run_phenomenon, stored_arms
from learnscope.spec import Experiment
from learnscope.store import Store

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_PLUGIN = ROOT / "examples" / "plugin_example.py"


def small_experiment(**recipe) -> Experiment:
    return Experiment.model_validate({
        "task": {"name": "gaussian-mixture", "classes": 3, "dim": 4, "samples": 64},
        "model": {"name": "mlp", "hidden": [8]},
        "recipe": {"steps": 5, "probe_every": 5, **recipe},
        "probes": ["accuracy"],
        "seeds": 2,
    })


# ---------------------------------------------------------------- signatures


def test_a_seed_fails_with_the_reason_of_its_first_failing_claim():
    sig = Signature([0, 1, 2])
    x = sig.measure("x", [1.0, 5.0, np.nan])
    sig.claim("x is finite", np.isfinite(x), "x is not finite")
    sig.claim("x <= 2", ~(x > 2), "x {0:.1f} > 2", x)
    sig.claim("never", [True, False, False], lambda s: f"seed index {s}")
    verdict = sig.verdict()
    assert verdict.passed == [True, False, False]
    assert verdict.failures == ["", "x 5.0 > 2", "x is not finite"]
    assert [c["holds"] for c in verdict.claims] == [[True, True, False], [True, False, True], [True, False, False]]
    assert verdict.measures["x"][:2] == [1.0, 5.0] and np.isnan(verdict.measures["x"][2])
    assert not verdict.ok and "seed 1: x 5.0 > 2" in verdict.line("p")


def test_required_share_and_fail_all():
    sig = Signature([0, 1, 2, 3], required_share=0.75)
    sig.claim("most", [True, True, True, False])
    assert sig.verdict().ok
    assert sig.verdict().failures[3] == "not: most"
    none = Signature([0, 1]).fail_all("no arms")
    assert not none.ok and none.failures == ["no arms", "no arms"]


def test_a_measure_must_have_one_value_per_seed():
    with pytest.raises(ValueError, match="3 values for 2 seeds"):
        Signature([0, 1]).measure("x", [1, 2, 3])


def test_threshold_is_its_number_and_carries_its_measured_ranges():
    t = Threshold(0.25, "LIMIT", "what it bounds", "m", full=(0.1, 0.2), quick=(0.05, 0.3), seeds={"full": 8})
    assert t == 0.25 and 2 * t == 0.5 and f"{t:g}" == "0.25" and t > 0.2
    assert t.measured == {"full": (0.1, 0.2), "quick": (0.05, 0.3)}
    assert "LIMIT = 0.25" in t.describe() and "full 0.1 to 0.2 (8 seeds)" in t.describe()
    assert pickle.loads(pickle.dumps(t)) == 0.25
    assert json.loads(json.dumps(t.as_dict()))["measured"]["quick"] == [0.05, 0.3]


# ---------------------------------------------------------------- arms


def test_arms_are_typed_and_checked():
    base = Arm("base", small_experiment())
    derived = base.derive("faster", {"recipe.lr": 0.01}, starts_from="base")
    assert derived.experiment.recipe.lr == 0.01 and base.experiment.recipe.lr == 1e-3
    assert derived.stored_spec()["init_from"] == "@base"
    assert Arm.from_stored("faster", derived.stored_spec()) == derived
    with pytest.raises(SpecError, match="recipe.lr"):
        base.derive("bad", {"recipe.lr": -1.0})
    with pytest.raises(LearnscopeError, match="not an arm before it"):
        arm_table([derived, base], "p")
    with pytest.raises(LearnscopeError, match="two arms"):
        arm_table([base, base], "p")
    with pytest.raises(LearnscopeError, match="starts_from"):
        Arm("x", small_experiment().derive({"init_from": "@base"}))


def test_an_override_of_one_arm_leaves_the_others():
    _, arms = phenomenon_arms("grokking", quick=True, overrides=["no-weight-decay:recipe.steps=30"])
    assert arms["no-weight-decay"].experiment.recipe.steps == 30
    assert arms["grokking"].experiment.recipe.steps == 1200
    _, arms = phenomenon_arms("grokking", quick=True, overrides=["recipe.steps=40"], seeds=2)
    assert {a.experiment.recipe.steps for a in arms.values()} == {40}
    assert {len(a.experiment.seed_list) for a in arms.values()} == {2}


def test_an_unknown_arm_is_refused_naming_the_arms():
    with pytest.raises(SpecError, match="'nope' is not an arm of grokking; valid: grokking, no-weight-decay"):
        phenomenon_arms("grokking", quick=True, overrides=["nope:recipe.steps=30"])


def test_a_global_override_that_would_erase_a_difference_between_arms_is_refused():
    with pytest.raises(SpecError, match=r"recipe.weight_decay: the arms of grokking differ in it .*ARM:recipe"):
        phenomenon_arms("grokking", quick=True, overrides=["recipe.weight_decay=0.1"])
    with pytest.raises(SpecError, match="model.output_scale"):
        phenomenon_arms("lazy-rich", quick=True, overrides=["model.output_scale=2"])
    # per arm it is the user's explicit choice
    _, arms = phenomenon_arms("grokking", quick=True, overrides=["grokking:recipe.weight_decay=0.1"])
    assert arms["grokking"].experiment.recipe.weight_decay == 0.1


def test_parameters_that_move_together_are_refused_alone():
    moving = [(name, group) for name, cls in registry.phenomena.items() for group in cls.moves_together]
    assert moving, "no phenomenon declares parameters that move together"
    for name, group in moving:
        _, arms = phenomenon_arms(name, quick=True)
        first = next(iter(arms.values())).experiment.to_dict()
        from learnscope.spec import get_key

        for key in group:
            value = get_key(first, key)
            if value is None:
                continue
            with pytest.raises(SpecError, match="moves together"):
                phenomenon_arms(name, quick=True, overrides=[f"{key}={json.dumps(value)}"])


def test_a_key_the_arms_are_built_around_is_refused():
    with pytest.raises(SpecError, match="built around task.requests"):
        phenomenon_arms("unlearning-sustainability", quick=True, overrides=["task.requests=4"])


def test_stored_arms_read_back_as_the_experiments_that_ran(tmp_path):
    _, arms = phenomenon_arms("grokking", quick=True, seeds=1, overrides=["recipe.steps=4"])
    run = run_phenomenon("grokking", quick=True, seeds=1, overrides=["recipe.steps=4"], store=Store(tmp_path))
    stored = stored_arms(run.record)
    assert stored == arms
    assert all(isinstance(a.experiment, Experiment) for a in stored.values())


# ---------------------------------------------------------------- discovery and plugins


def test_registries_hold_every_built_in_module():
    assert {"grokking", "lazy-rich", "ga-collapse"} <= set(registry.phenomena.names())
    assert {"accuracy", "membership_auc"} <= set(registry.probes.names())
    assert {"mlp", "transformer"} <= set(registry.models.names())
    assert {"npo", "ewc", "grokfast"} <= set(registry.interventions.names())
    assert {"modular-arithmetic", "facts", "permuted-stream"} <= set(registry.tasks.names())


def program(args, cwd: Path, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k not in ("LEARNSCOPE_STORE", "LEARNSCOPE_PLUGINS")}
    environ["OMP_NUM_THREADS"] = "1"
    environ.update(env or {})
    return subprocess.run([sys.executable, "-m", "learnscope", *map(str, args)], cwd=cwd, env=environ,
                          capture_output=True, text=True, timeout=timeout)


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


@pytest.mark.slow
def test_a_plugin_file_outside_the_package_runs_from_the_cli(tmp_path):
    plugin = tmp_path / "mylab.py"
    shutil.copy(EXAMPLE_PLUGIN, plugin)
    proc = program(["verify", "weight-decay-shrinks", "--quick", "--plugin", plugin, "--store", tmp_path / "s"],
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "verified weight-decay-shrinks: PASS (2/2 seeds)" in proc.stdout
    spec = tmp_path / "spec.yaml"
    shutil.copy(ROOT / "examples" / "largest_weight.yaml", spec)
    proc = program(["run", spec, "--plugin", plugin, "--store", tmp_path / "s", "--json", "--no-report"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    final = json.loads(proc.stdout.strip().splitlines()[-1])["final"]["largest_weight"]
    assert set(final) == {"0", "1"} and all(v > 0 for v in final.values())
    # the same from the environment, and listed
    proc = program(["list", "--json"], cwd=tmp_path, env={"LEARNSCOPE_PLUGINS": str(plugin)})
    assert "weight-decay-shrinks" in [e["name"] for e in json.loads(proc.stdout)]
    proc = program(["list", "weight-decay-shrinks", "--plugin", plugin, "--json"], cwd=tmp_path)
    assert json.loads(proc.stdout)["thresholds"][0]["name"] == "SHRINK"


@pytest.mark.slow
def test_an_installed_package_registers_through_its_entry_point(tmp_path):
    shutil.copy(EXAMPLE_PLUGIN, tmp_path / "mylab_components.py")
    dist = tmp_path / "mylab-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: mylab\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[learnscope.plugins]\ncomponents = mylab_components\n")
    proc = program(["list", "--json"], cwd=tmp_path, env={"PYTHONPATH": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    assert "weight-decay-shrinks" in [e["name"] for e in json.loads(proc.stdout)]


@pytest.mark.slow
def test_bad_plugins_get_one_line(tmp_path):
    assert "no such file" in one_error_line(program(["list", "--plugin", tmp_path / "none.py"], cwd=tmp_path))
    assert "no module named 'no_such_module'" in one_error_line(
        program(["list", "--plugin", "no_such_module"], cwd=tmp_path))
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('half written')\n")
    assert "failed to import: RuntimeError: half written" in one_error_line(
        program(["list", "--plugin", broken], cwd=tmp_path))
    clash = tmp_path / "clash.py"
    clash.write_text("from learnscope import registry\nfrom learnscope.probes.weights import WeightNorm\n"
                     "registry.probes.register('accuracy')(type('Mine', (WeightNorm,), {}))\n")
    assert "probe 'accuracy' is registered twice" in one_error_line(program(["list", "--plugin", clash], cwd=tmp_path))


@pytest.mark.slow
def test_a_copied_phenomenon_file_is_listed_and_verified_with_no_other_edit(tmp_path):
    catalog = ROOT / "src" / "learnscope" / "catalog"
    name = f"grokking-copy-{os.getpid()}"
    copy = catalog / f"copy_of_grokking_{os.getpid()}.py"
    text = (catalog / "grokking.py").read_text()
    text = text.replace('register("grokking")', f'register("{name}")').replace("class Grokking(", "class GrokkingCopy(")
    try:
        copy.write_text(text)
        listed = program(["list", "--json"], cwd=tmp_path)
        assert name in [e["name"] for e in json.loads(listed.stdout)], listed.stderr
        proc = program(["verify", name, "--quick", "--seeds", "1", "--store", tmp_path / "s"], cwd=tmp_path)
        assert f"verified {name}: PASS (1/1 seeds)" in proc.stdout, proc.stdout + proc.stderr
    finally:
        copy.unlink(missing_ok=True)


# ---------------------------------------------------------------- the README's tables


def _table_rows(section: str) -> dict[str, str]:
    text = (ROOT / "README.md").read_text()
    body = text.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in body.splitlines() if line.startswith("|")]
    rows = {}
    for line in lines[2:]:  # past the header and its rule
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        rows[cells[0]] = cells[1]
    return rows


def _names_outside_parentheses(cell: str) -> set[str]:
    """Backticked names at the top level of a cell (parameters sit inside parentheses)."""
    depth, top = 0, []
    for ch in cell:
        depth += ch == "("
        if depth == 0:
            top.append(ch)
        depth -= ch == ")" and depth > 0
    return set(re.findall(r"`([^`]+)`", "".join(top)))


def test_readme_component_tables_match_the_registries():
    rows = _table_rows("Components")
    built_in = {kind: {n for n, c in reg.items() if c.__module__.startswith("learnscope.")}
                for kind, reg in (("tasks", registry.tasks), ("models", registry.models),
                                  ("interventions", registry.interventions), ("probes", registry.probes))}
    readme = {kind: _names_outside_parentheses(rows[kind]) for kind in built_in}
    readme["tasks"] |= _names_outside_parentheses(rows["streams"])
    assert readme == built_in


def test_readme_catalog_table_matches_the_registry():
    listed = {re.sub(r"`", "", name) for name in _table_rows("Catalog")}
    assert listed == {n for n, c in registry.phenomena.items() if c.__module__.startswith("learnscope.")}


def test_a_new_continual_strategy_joins_the_comparison_from_its_own_definition():
    from learnscope.catalog.forgetting import strategy_names
    from learnscope.interventions.regularizers import SynapticIntelligence

    assert strategy_names() == ["naive", "joint", "agem", "ewc", "lwf", "power-law-rehearsal", "replay", "si"]

    class Stronger(SynapticIntelligence):
        @classmethod
        def stream_strategy(cls, budget):
            return {"c": 0.5}

    registry.interventions.register("si-half")(Stronger)
    try:
        assert "si-half" in strategy_names()
        arms = {a.name: a for a in registry.phenomena.get("continual-strategies")().arms(quick=True)}
        assert arms["si-half"].experiment.interventions[0].c == 0.5
    finally:
        registry.interventions._entries.pop("si-half")
