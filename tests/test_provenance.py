"""A report says how to make its run again, and what it ran on: the command
(an experiment's spec written beside the page), learnscope's, torch's and
Python's versions, the git commit of a checkout, and each arm's wall time.
The command is tested by running it: the same rows, bit for bit."""

from __future__ import annotations

import shlex
import sqlite3
from importlib.metadata import version
from pathlib import Path

import pytest

from helpers import cli
from learnscope.provenance import git_commit
from learnscope.runner import phenomenon_arms
from learnscope.store.sqlite import Store

pytestmark = pytest.mark.usefixtures("isolated")

SPEC = """\
task: {name: gaussian-mixture, classes: 3, dim: 4, samples: 64, test_samples: 32}
model: {name: mlp, hidden: [8]}
recipe: {optimizer: sgd, lr: 0.1, steps: 20, probe_every: 10, probe_log_points: 0}
probes: [accuracy, loss]
seeds: 2
"""


def rows(store: Path, run_id: str) -> list[tuple]:
    conn = sqlite3.connect(store / "runs.db")
    try:
        return sorted(conn.execute("SELECT seed, step, name, value FROM metric_rows WHERE run_id = ?", (run_id,)))
    finally:
        conn.close()


def reproduce_line(page: str) -> str:
    start = page.index("reproduce: <code>") + len("reproduce: <code>")
    import html

    return html.unescape(page[start: page.index("</code>", start)])


def test_experiment_report_reproduces_its_run(tmp_path, capsys):
    spec = tmp_path / "tiny.yaml"
    spec.write_text(SPEC)
    store = tmp_path / "store"
    code, _, err = cli(capsys, "run", spec, "--store", store, "--run-id", "first", "--set", "recipe.lr=0.3",
                       "--no-report")
    assert code == 0, err
    code, out, err = cli(capsys, "report", "first", "--store", store, "-o", tmp_path / "rep")
    assert code == 0, err
    page = (tmp_path / "rep" / "index.html").read_text()
    command = shlex.split(reproduce_line(page))
    assert command[:2] == ["learnscope", "run"] and Path(command[2]) == tmp_path / "rep" / "spec.yaml"
    code, _, err = cli(capsys, *command[1:], "--store", store, "--run-id", "again", "--no-report")
    assert code == 0, err
    assert rows(store, "again") == rows(store, "first") and rows(store, "first")
    assert f"torch {version('torch')}" in page and f"learnscope {version('learnscope')}" in page
    commit = git_commit()
    assert (f"git {commit}" in page) if commit else "not run from a git checkout" in page
    assert "wall time per arm:" in page and " s</li>" in page
    env = Store(store).events("first", "environment")[0]["detail"]
    assert env["torch"] == version("torch") and env["git"] == commit


def test_phenomenon_report_names_its_command(tmp_path, capsys):
    store = tmp_path / "store"
    code, _, err = cli(capsys, "run", "lazy-rich", "--quick", "--seeds", "2", "--set", "alpha-2:recipe.steps=700",
                       "--store", store, "--run-id", "lr", "--no-report")
    assert code == 0, err
    code, _, err = cli(capsys, "report", "lr", "--store", store, "-o", tmp_path / "rep")
    assert code == 0, err
    page = (tmp_path / "rep" / "index.html").read_text()
    command = reproduce_line(page)
    assert command == "learnscope run lazy-rich --quick --seeds=2 --set alpha-2:recipe.steps=700"
    record = Store(store).get_run("lr")
    _, arms = phenomenon_arms("lazy-rich", True, 2, ["alpha-2:recipe.steps=700"])  # what that command would run
    assert {arm: a.stored_spec() for arm, a in arms.items()} == record.spec["arms"]
    for child in Store(store).children("lr"):
        assert f"<li>{child.arm}: " in page
    assert "thresholds:" in page
