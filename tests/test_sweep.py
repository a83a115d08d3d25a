"""Sweeps: a grid of trials, each an ordinary run (children of the sweep),
identical to separate runs with the same values and seeds; validated before
anything is recorded; resumed exactly; listed, compared and reported."""

from __future__ import annotations

import json
import signal
import sqlite3
from pathlib import Path

import pytest

from helpers import cli, learnscope, run_count
from learnscope.cli import main
from learnscope.store.sqlite import Store
from learnscope.sweep.grid import parse_grid, split_values
from learnscope.sweep.report import log_axis

TINY_SPEC = """\
task: {name: gaussian-mixture, classes: 3, dim: 4, samples: 64, test_samples: 32}
model: {name: mlp, hidden: [8]}
recipe: {optimizer: sgd, lr: 0.1, steps: 20, probe_every: 10, probe_log_points: 0, checkpoint_every: 5}
probes: [accuracy, loss]
seeds: 2
"""
LRS = ["0.03", "0.1", "0.3"]


def last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def rows(store_dir: Path, run_id: str) -> list[tuple]:
    """(seed, step, name, value) of one run, sorted."""
    conn = sqlite3.connect(Path(store_dir) / "runs.db")
    try:
        return sorted(conn.execute("SELECT seed, step, name, value FROM metric_rows WHERE run_id = ?", (run_id,)))
    finally:
        conn.close()


def all_rows(store_dir: Path, prefix: str) -> list[tuple]:
    conn = sqlite3.connect(Path(store_dir) / "runs.db")
    try:
        return sorted(conn.execute("SELECT run_id, seed, step, name, value FROM metric_rows WHERE run_id LIKE ?",
                                   (f"{prefix}.%",)))
    finally:
        conn.close()


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("spec") / "tiny.yaml"
    path.write_text(TINY_SPEC)
    return path


def test_grid_parsing():
    assert split_values("0.03,0.1, 0.3") == ["0.03", "0.1", "0.3"]
    assert split_values("[32],[64, 64]") == ["[32]", "[64, 64]"]
    assert split_values("'a,b',c") == ["'a,b'", "c"]
    axes = parse_grid(["recipe.lr=0.03,0.3", "no-weight-decay:model.hidden=[32],[64]"])
    assert [a.label for a in axes] == ["recipe.lr", "no-weight-decay:model.hidden"]
    assert axes[0].values == [0.03, 0.3] and axes[1].values == [[32], [64]]
    assert log_axis(axes[0]) and not log_axis(axes[1])
    assert log_axis(parse_grid(["model.width=4,64"])[0]) and not log_axis(parse_grid(["recipe.steps=10,20"])[0])


def test_sweep_trials_equal_separate_runs(spec_file, tmp_path, capsys):
    store = tmp_path / "store"
    code, out, err = cli(capsys, "sweep", spec_file, "--grid", "recipe.lr=" + ",".join(LRS), "--store", store,
                         "--run-id", "S", "--json", "--no-report")
    assert code == 0, err
    payload = last_json(out)
    assert payload["sweep_id"] == "S" and payload["status"] == "finished"
    assert [t["run_id"] for t in payload["trials"]] == ["S.t0", "S.t1", "S.t2"]
    assert [t["values"] for t in payload["trials"]] == [{"recipe.lr": float(lr)} for lr in LRS]
    assert all(t["status"] == "finished" for t in payload["trials"])
    st = Store(store)
    assert st.get_run("S").kind == "sweep"
    children = st.children("S")
    assert [c.id for c in children] == ["S.t0", "S.t1", "S.t2"] and {c.parent for c in children} == {"S"}
    assert [e["detail"]["values"] for c in children for e in st.events(c.id, "sweep-trial")] == \
        [{"recipe.lr": float(lr)} for lr in LRS]
    for index, lr in enumerate(LRS):
        code, _, err = cli(capsys, "run", spec_file, "--set", f"recipe.lr={lr}", "--store", store,
                           "--run-id", f"single-{lr}", "--no-report")
        assert code == 0, err
        trial = rows(store, f"S.t{index}")
        assert trial and trial == rows(store, f"single-{lr}")
        assert {seed for seed, *_ in trial} == {0, 1}

    # runs: the sweep with its trials, swept values and durations, indented
    code, out, _ = cli(capsys, "runs", "--store", store)
    assert code == 0
    lines = out.splitlines()
    at = next(i for i, line in enumerate(lines) if "│ S " in line)
    for index, lr in enumerate(LRS):
        assert f"└ S.t{index}" in lines[at + 1 + index] and f"recipe.lr={float(lr)}" in lines[at + 1 + index]
        assert "took" in lines[at + 1 + index]
    code, out, _ = cli(capsys, "runs", "--store", store, "--json")
    listed = next(r for r in json.loads(out) if r["run_id"] == "S")
    assert [t["run_id"] for t in listed["trials"]] == ["S.t0", "S.t1", "S.t2"]
    assert all(t["duration"] > 0 for t in listed["trials"])
    assert "S.t0" not in {r["run_id"] for r in json.loads(out)}  # trials show under the sweep only

    # show SWEEP: the trials table, the best marked
    code, out, _ = cli(capsys, "show", "S", "--store", store)
    assert code == 0 and "★" in out and "best trial by the mean of accuracy/test" in out

    # compare SWEEP: every trial against the best (by accuracy/test), or a named baseline
    code, out, _ = cli(capsys, "compare", "S", "--store", store, "--json")
    assert code == 0
    compared = last_json(out)
    assert compared["ranked_by"] == "accuracy/test"
    assert compared["baseline"] in {"S.t0", "S.t1", "S.t2"}
    assert set(compared["trials"]) == {"S.t0", "S.t1", "S.t2"} - {compared["baseline"]}
    code, out, _ = cli(capsys, "compare", "S", "--baseline", "S.t0", "--metric", "loss/test", "--store", store,
                       "--json")
    compared = last_json(out)
    assert code == 0 and compared["baseline"] == "S.t0" and compared["ranked_by"] is None
    assert set(compared["trials"]) == {"S.t1", "S.t2"}
    assert all(set(diff) == {"loss/test"} for diff in compared["trials"].values())
    code, out, err = cli(capsys, "compare", "S", "--baseline", "S.t9", "--store", store)
    assert code == 2 and err.count("\n") == 1 and "not a trial of sweep" in err
    code, out, _ = cli(capsys, "compare", "S", "--store", store)
    assert code == 0 and "every trial against" in out and "spec diff" in out

    # the report: each metric against the axis, a table of trials
    code, out, err = cli(capsys, "report", "S", "--store", store)
    assert code == 0, err
    index = Path(out.strip().split("report: ")[-1])
    text = index.read_text()
    assert "accuracy/test vs recipe.lr" in text and "★" in text and "mean [95% CI]" in text
    assert (index.parent / "accuracy_test_vs_recipe_lr.png").is_file()


def test_two_axes_make_a_heatmap(spec_file, tmp_path, capsys):
    store = tmp_path / "store"
    code, out, err = cli(capsys, "sweep", spec_file, "--grid", "recipe.lr=0.1,0.3", "--grid",
                         "model.hidden=[4],[8, 8]", "--seeds", "2", "--store", store, "--run-id", "H", "--json")
    assert code == 0, err
    payload = last_json(out)
    assert [t["values"] for t in payload["trials"]] == [
        {"recipe.lr": lr, "model.hidden": hidden} for lr in (0.1, 0.3) for hidden in ([4], [8, 8])]
    assert Store(store).get_run("H.t3").spec["model"]["hidden"] == [8, 8]
    report = Path(payload["report"])
    assert (report.parent / "accuracy_test_heatmap.png").is_file()
    assert "accuracy/test heatmap" in report.read_text()


def test_phenomenon_sweep_over_one_arm(tmp_path, capsys):
    store = tmp_path / "store"
    code, out, err = cli(capsys, "sweep", "grokking", "--quick", "--seeds", "1", "--set", "recipe.steps=20",
                         "--grid", "no-weight-decay:recipe.lr=0.001,0.003", "--store", store, "--run-id", "G",
                         "--json", "--no-report")
    assert code == 0, err
    payload = last_json(out)
    assert [t["values"] for t in payload["trials"]] == [{"no-weight-decay:recipe.lr": v} for v in (0.001, 0.003)]
    st = Store(store)
    for index, lr in enumerate((0.001, 0.003)):
        trial = st.get_run(f"G.t{index}")
        assert trial.kind == "phenomenon" and trial.parent == "G" and trial.status == "finished"
        arms = {arm.arm: arm for arm in st.children(trial.id)}
        assert set(arms) == {"grokking", "no-weight-decay"}
        assert arms["no-weight-decay"].id == f"G.t{index}.no-weight-decay"
        assert arms["no-weight-decay"].spec["recipe"]["lr"] == lr
        assert arms["grokking"].spec["recipe"]["lr"] != 0.003
        assert st.events(trial.id, "signature"), "each trial has its verdict"
        assert rows(store, f"G.t{index}.grokking")


@pytest.mark.parametrize("grid,expected", [
    (["recipe.lr=0.1,abc"], "recipe.lr=abc"),
    (["recipe.lrr=0.1"], "unknown key"),
    (["recipe.lr="], "empty value"),
    (["recipe.lr"], "not of the form"),
    (["recipe.lr=0.1,0.1"], "twice"),
    (["arm:recipe.lr=0.1"], "spec file has none"),
])
def test_bad_grid_is_one_line_and_records_nothing(grid, expected, spec_file, tmp_path, capsys):
    store = tmp_path / "store"
    argv = ["sweep", spec_file, *(x for g in grid for x in ("--grid", g)), "--store", store]
    code, out, err = cli(capsys, *argv)
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: ") and expected in err, err
    assert run_count(store) == 0


@pytest.mark.parametrize("argv,expected", [
    (["grokking", "--quick", "--grid", "nope:recipe.lr=0.1"], "'nope' is not an arm of grokking"),
    (["nothing-here", "--grid", "recipe.lr=0.1"], "neither a phenomenon nor a spec file"),
])
def test_bad_sweep_input(argv, expected, tmp_path, capsys):
    store = tmp_path / "store"
    code, _, err = cli(capsys, "sweep", *argv, "--store", store)
    assert code == 2 and err.count("\n") == 1 and expected in err, err
    assert run_count(store) == 0


@pytest.mark.parametrize("fault", ["trial-finished:1", "step:33"], ids=["between-trials", "inside-second-trial"])
def test_interrupted_sweep_resumes_to_identical_rows(fault, spec_file, tmp_path, capsys):
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    args = ["sweep", spec_file, "--grid", "recipe.lr=" + ",".join(LRS), "--run-id", "S", "--no-report"]
    assert main([*map(str, args), "--store", str(reference)]) == 0
    done = learnscope(*args, "--store", killed, fault=fault)
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    st = Store(killed)
    assert st.get_run("S").status == "interrupted"
    statuses = {c.id: c.status for c in st.children("S")}
    assert statuses["S.t0"] == "finished" and "S.t2" not in statuses
    if fault.startswith("step"):
        assert statuses["S.t1"] == "interrupted"
    code, out, err = cli(capsys, "resume", "S", "--store", killed, "--no-report", "--json")
    assert code == 0, err
    payload = last_json(out)
    assert payload["status"] == "finished" and [t["status"] for t in payload["trials"]] == ["finished"] * 3
    assert all_rows(killed, "S") == all_rows(reference, "S")
    code, _, err = cli(capsys, "resume", "S", "--store", killed)
    assert code == 2 and "already finished" in err
    code, _, err = cli(capsys, "resume", "S.t0", "--store", killed)
    assert code == 2 and "trial of the sweep 'S'" in err
