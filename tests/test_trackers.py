"""`learnscope export --format tensorboard|mlflow`: runs written for the
trackers researchers use, read back through those libraries' own readers
(TensorBoard's EventAccumulator, MLflow's MlflowClient) and compared with the
store row by row: values by step, the spec as hparams and params, one series
per arm and seed."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import yaml

from helpers import cli
from learnscope.cli import main
from learnscope.runner import run_experiment, run_phenomenon
from learnscope.spec import Experiment
from learnscope.store.sqlite import Store
from learnscope.store.trackers import flatten_spec, mlflow_tracking_uri

pytestmark = pytest.mark.usefixtures("isolated")

TINY = """\
task: {name: gaussian-mixture, classes: 3, dim: 4, samples: 64, test_samples: 32}
model: {name: mlp, hidden: [8]}
recipe: {optimizer: sgd, lr: 0.1, steps: 20, probe_every: 10, probe_log_points: 0}
probes: [accuracy, loss]
seeds: 2
"""
EXPERIMENT, PHENOMENON = "tiny-run", "grok-run"
ARMS = ("grokking", "no-weight-decay")


def one_error_line(code: int, err: str, *fragments: str) -> str:
    assert code == 2, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A store with a 2-seed experiment and a 1-seed, 2-arm phenomenon; both
    exported to TensorBoard (a directory each) and to one MLflow store (an experiment each)."""
    root = tmp_path_factory.mktemp("trackers")
    store = Store(root / "store")
    run_experiment(Experiment.model_validate(yaml.safe_load(TINY)), store=store, run_id=EXPERIMENT)
    run_phenomenon("grokking", quick=True, seeds=1, overrides=["recipe.steps=10"], store=store, run_id=PHENOMENON)
    outputs = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root / "store")  # the working directory: nothing may land there (MLflow's default ./mlruns)
        for run_id in (EXPERIMENT, PHENOMENON):
            for fmt in ("tensorboard", "mlflow"):
                out = root / (f"tb-{run_id}" if fmt == "tensorboard" else "mlflow")
                code = main(["export", run_id, "--format", fmt, "-o", str(out), "--store", str(store.dir)])
                assert code == 0
                outputs[run_id, fmt] = out
    assert {p.name for p in root.iterdir()} == {"store", "mlflow", f"tb-{EXPERIMENT}", f"tb-{PHENOMENON}"}
    assert {p.name for p in (root / "mlflow").iterdir()} == {"mlflow.db"}
    assert not (root / "store" / "mlruns").exists()
    return {"store": store, "root": root, "out": outputs}


def store_rows(store: Store, run_id: str, seed: int) -> dict[str, tuple[list[int], np.ndarray]]:
    """Per metric name: steps and values of one seed of one run, as stored."""
    frame = store.metrics(run_id)
    frame = frame[frame["seed"] == seed]
    return {name: (group["step"].tolist(), group["value"].to_numpy())
            for name, group in frame.groupby("name", sort=True)}


def series(store: Store, run_id: str) -> list[tuple[str | None, str, int, dict]]:
    """(arm, arm's run id, seed, arm's spec) of every series the export should write."""
    record = store.get_run(run_id)
    arms = store.children(run_id) if record.kind == "phenomenon" else [record]
    return [(arm.arm, arm.id, seed, arm.spec) for arm in arms for seed in arm.seeds]


# ---------------------------------------------------------------- the spec, flattened


def test_flatten_spec_gives_dotted_keys_and_scalar_values():
    spec = {"task": {"name": "mlp", "p": 97, "frac": 0.4, "noise": None, "extra": {}},
            "model": {"hidden": [64, 64], "bias": True},
            "probes": [{"name": "accuracy", "splits": None}, {"name": "effective_rank", "site": "fc1"}],
            "interventions": [], "seeds": 8, "betas": (0.9, 0.98)}
    assert flatten_spec(spec) == {
        "task.name": "mlp", "task.p": 97, "task.frac": 0.4, "task.noise": "null", "task.extra": "{}",
        "model.hidden": "[64, 64]", "model.bias": True,
        "probes.0.name": "accuracy", "probes.0.splits": "null", "probes.1.name": "effective_rank",
        "probes.1.site": "fc1", "interventions": "[]", "seeds": 8, "betas": "[0.9, 0.98]",
    }


def test_flatten_spec_of_a_stored_run_is_all_scalars(runs):
    flat = flatten_spec(runs["store"].get_run(PHENOMENON).spec)
    assert flat["phenomenon"] == "grokking" and flat["quick"] is True
    assert flat["arms.no-weight-decay.recipe.steps"] == 10
    assert all(isinstance(v, str | bool | int | float) for v in flat.values())


# ---------------------------------------------------------------- TensorBoard


@pytest.mark.parametrize("run_id", [EXPERIMENT, PHENOMENON])
def test_tensorboard_has_one_run_directory_per_arm_and_seed(runs, run_id):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import metadata

    store, out = runs["store"], runs["out"][run_id, "tensorboard"]
    expected = series(store, run_id)
    labels = {f"{arm}/seed-{seed}" if arm else f"seed-{seed}" for arm, _, seed, _ in expected}
    assert labels == ({"seed-0", "seed-1"} if run_id == EXPERIMENT else {f"{arm}/seed-0" for arm in ARMS})
    written = {str(p.parent.relative_to(out)) for p in out.rglob("*tfevents*")} - {"."}
    assert written == labels
    for arm, arm_id, seed, spec in expected:
        label = f"{arm}/seed-{seed}" if arm else f"seed-{seed}"
        events = EventAccumulator(str(out / label), size_guidance={"scalars": 0, "tensors": 0})
        events.Reload()
        rows = store_rows(store, arm_id, seed)
        assert rows and sorted(events.Tags()["scalars"]) == sorted(rows)
        for name, (steps, values) in rows.items():
            scalars = events.Scalars(name)
            assert [s.step for s in scalars] == steps
            # TensorBoard keeps scalars as float32
            np.testing.assert_array_equal(np.array([s.value for s in scalars], np.float32), values.astype(np.float32))
        content = events.PluginTagToContent("hparams")[metadata.SESSION_START_INFO_TAG]
        hparams = metadata.parse_session_start_info_plugin_data(content).hparams
        want = {**flatten_spec(spec), **({"arm": arm} if arm else {}), "seed": seed}
        assert set(hparams) == set(want)
        for key, value in want.items():
            got = hparams[key]
            if isinstance(value, bool):
                assert got.bool_value is value, key
            elif isinstance(value, str):
                assert got.string_value == value, key
            else:
                assert got.number_value == value, key


def test_tensorboard_root_declares_the_hparams_and_metrics(runs):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import metadata

    events = EventAccumulator(str(runs["out"][PHENOMENON, "tensorboard"]))
    events.Reload()
    experiment = metadata.parse_experiment_plugin_data(events.PluginTagToContent("hparams")[metadata.EXPERIMENT_TAG])
    names = {info.name for info in experiment.hparam_infos}
    assert {"arm", "seed", "recipe.lr", "recipe.weight_decay", "task.p"} <= names
    arm = next(info for info in experiment.hparam_infos if info.name == "arm")
    assert sorted(v.string_value for v in arm.domain_discrete.values) == sorted(ARMS)
    decay = next(info for info in experiment.hparam_infos if info.name == "recipe.weight_decay")
    assert decay.domain_interval.min_value == 0.0 and decay.domain_interval.max_value > 0  # the control has none
    metrics = {info.name.tag for info in experiment.metric_infos}
    assert metrics == set(runs["store"].metrics(f"{PHENOMENON}.grokking")["name"])


# ---------------------------------------------------------------- MLflow


def mlflow_client(runs):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=mlflow_tracking_uri(runs["out"][EXPERIMENT, "mlflow"]))


@pytest.mark.parametrize("run_id", [EXPERIMENT, PHENOMENON])
def test_mlflow_has_a_parent_run_and_a_child_per_arm_and_seed(runs, run_id):
    store, client = runs["store"], mlflow_client(runs)
    record = store.get_run(run_id)
    experiment = client.get_experiment_by_name(run_id)
    assert experiment is not None and experiment.tags["learnscope.kind"] == record.kind
    found = client.search_runs([experiment.experiment_id], max_results=1000)
    parents = [r for r in found if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1
    parent = parents[0]
    assert parent.info.run_name == run_id and parent.info.status == "FINISHED"
    assert parent.data.params == {k: str(v) for k, v in flatten_spec(record.spec).items()}
    children = {(r.data.tags.get("arm"), int(r.data.tags["seed"])): r for r in found if r is not parent}
    expected = series(store, run_id)
    assert set(children) == {(arm, seed) for arm, _, seed, _ in expected}
    for arm, arm_id, seed, spec in expected:
        child = children[arm, seed]
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.data.tags["learnscope.run_id"] == arm_id and child.info.status == "FINISHED"
        assert child.info.run_name == (f"{arm}/seed-{seed}" if arm else f"seed-{seed}")
        assert child.data.params == {k: str(v) for k, v in flatten_spec(spec).items()}
        rows = store_rows(store, arm_id, seed)
        assert rows and set(child.data.metrics) == set(rows)
        for name, (steps, values) in rows.items():
            history = sorted(client.get_metric_history(child.info.run_id, name), key=lambda m: m.step)
            assert [m.step for m in history] == steps
            np.testing.assert_array_equal(np.array([m.value for m in history]), values)  # float64, exactly


def test_a_diverged_seed_keeps_its_nan_and_inf(runs, tmp_path):
    """A diverged seed's non-finite values are exported as they are (MLflow keeps
    +inf as the largest double, its own convention), its step tagged, its status kept."""
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    store = Store(tmp_path / "store")
    store.create_run("diverging-run", "demo", {"task": {"name": "x"}}, [0, 1])
    store.write_metrics("diverging-run", 0, [0, 1], {"loss": [1.0, float("nan")], "norm": [0.5, float("inf")]})
    store.add_event("diverging-run", "diverged", {"metric": "loss"}, seed=1, step=0)
    store.set_status("diverging-run", "failed", "ValueError: boom")
    for fmt, out in (("tensorboard", tmp_path / "tb"), ("mlflow", runs["out"][EXPERIMENT, "mlflow"])):
        assert main(["export", "diverging-run", "--format", fmt, "-o", str(out), "--store", str(store.dir)]) == 0
    events = EventAccumulator(str(tmp_path / "tb" / "seed-1"))
    events.Reload()
    assert np.isnan(events.Scalars("loss")[0].value) and events.Scalars("norm")[0].value == float("inf")
    client = MlflowClient(tracking_uri=mlflow_tracking_uri(runs["out"][EXPERIMENT, "mlflow"]))
    found = client.search_runs([client.get_experiment_by_name("diverging-run").experiment_id])
    by_seed = {r.data.tags.get("seed"): r for r in found}
    assert by_seed[None].info.status == "FAILED" and by_seed[None].data.tags["learnscope.reason"] == "ValueError: boom"
    assert by_seed["1"].data.tags["learnscope.diverged_at_step"] == "0" and "learnscope.diverged_at_step" not in (
        by_seed["0"].data.tags)
    assert np.isnan(by_seed["1"].data.metrics["loss"]) and by_seed["1"].data.metrics["norm"] == sys.float_info.max
    assert by_seed["0"].data.metrics == {"loss": 1.0, "norm": 0.5}


def test_mlflow_export_stays_offline(runs):
    import os

    assert os.environ.get("MLFLOW_DISABLE_TELEMETRY") == "true"  # the export turned MLflow's usage telemetry off


# ---------------------------------------------------------------- the command line and bad input


def test_cli_reports_the_rows_written(capsys, runs, tmp_path):
    out = tmp_path / "tb"
    code, printed, err = cli(capsys, "export", EXPERIMENT, "--format", "tensorboard", "-o", out,
                             "--store", runs["store"].dir)
    assert code == 0, err
    assert printed.strip() == f"wrote {len(runs['store'].metrics(EXPERIMENT))} rows to {out}"


def test_default_directory_is_named_after_the_run(capsys, runs, tmp_path):
    code, printed, err = cli(capsys, "export", EXPERIMENT, "--format", "tensorboard", "--store", runs["store"].dir)
    assert code == 0, err
    assert (tmp_path / f"{EXPERIMENT}-tensorboard" / "seed-1").is_dir()


def test_unknown_format_lists_the_valid_ones(capsys, runs):
    code, _, err = cli(capsys, "export", EXPERIMENT, "--format", "wandb", "--store", runs["store"].dir)
    one_error_line(code, err, "'wandb'", "csv", "parquet", "tensorboard", "mlflow")


@pytest.mark.parametrize("fmt", ["tensorboard", "mlflow"])
def test_bad_output_directory_is_one_line(capsys, runs, tmp_path, fmt):
    a_file = tmp_path / "a-file"
    a_file.write_text("not a directory")
    code, _, err = cli(capsys, "export", EXPERIMENT, "--format", fmt, "-o", a_file, "--store", runs["store"].dir)
    one_error_line(code, err, str(a_file), "directory")
    code, _, err = cli(capsys, "export", EXPERIMENT, "--format", fmt, "-o", a_file / "sub", "--store", runs["store"].dir)
    one_error_line(code, err, "cannot write", str(a_file / "sub"))


@pytest.mark.parametrize("fmt", ["tensorboard", "mlflow"])
def test_unknown_run_id_is_one_line_and_writes_nothing(capsys, runs, tmp_path, fmt):
    code, _, err = cli(capsys, "export", "nope-run", "--format", fmt, "-o", tmp_path / "x", "--store", runs["store"].dir)
    one_error_line(code, err, "unknown run id 'nope-run'", EXPERIMENT)
    assert not (tmp_path / "x").exists()


def test_exporting_twice_into_one_place_is_refused(capsys, runs):
    for fmt in ("tensorboard", "mlflow"):
        out = runs["out"][EXPERIMENT, fmt]
        code, _, err = cli(capsys, "export", EXPERIMENT, "--format", fmt, "-o", out, "--store", runs["store"].dir)
        one_error_line(code, err, str(out), "-o")


@pytest.mark.parametrize("fmt, module", [("tensorboard", "tensorboard"), ("mlflow", "mlflow")])
def test_a_missing_extra_is_named(capsys, runs, tmp_path, monkeypatch, fmt, module):
    for name in [m for m in sys.modules if m == module or m.startswith(module + ".")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, module, None)  # what an absent package looks like to import
    code, _, err = cli(capsys, "export", EXPERIMENT, "--format", fmt, "-o", tmp_path / "x", "--store", runs["store"].dir)
    one_error_line(code, err, f"pip install 'learnscope[{fmt}]'")


def test_importing_learnscope_loads_no_tracker():
    code = ("import json, sys, learnscope, learnscope.cli, learnscope.store\n"
            "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & {'tensorboard', 'mlflow', 'sqlalchemy'})))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []
