"""The command line's contracts. Most cases run in-process through
`learnscope.cli.main(argv)` (fast); a few end-to-end ones run the real
program in a subprocess (`python -m learnscope`), where exit codes, streams
and environment are the operating system's."""

from __future__ import annotations

import base64
import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from helpers import cli, run_count
from learnscope.cli import main
from learnscope.store.sqlite import Store

pytestmark = pytest.mark.usefixtures("isolated")

TINY_SPEC = """\
task: {name: gaussian-mixture, classes: 3, dim: 4, samples: 64, test_samples: 32}
model: {name: mlp, hidden: [8]}
recipe: {optimizer: sgd, lr: 0.1, steps: 20, probe_every: 10, probe_log_points: 0}
probes: [accuracy, loss]
seeds: 2
"""
TINY_METRICS = {"accuracy/train", "accuracy/test", "loss/train", "loss/test"}
VERIFY_LINE = re.compile(r"^verified grokking: (PASS \((\d+)/(\d+) seeds\)|FAIL \((\d+)/(\d+) seeds hold, \d+ needed; .+\))$")
EXPORT_COLUMNS = ["run_id", "seed", "step", "name", "value"]


def _no_nan(token):
    raise ValueError(f"{token} is not JSON")


def strict_json(line: str):
    """JSON as the RFC has it: NaN/Infinity are not JSON."""
    return json.loads(line, parse_constant=_no_nan)


def metric_row_count(store_dir: Path, run_ids: list[str]) -> int:
    conn = sqlite3.connect(Path(store_dir) / "runs.db")
    try:
        marks = ",".join("?" * len(run_ids))
        return conn.execute(
            f"SELECT COUNT(*) FROM metric_rows WHERE run_id IN ({marks})", run_ids
        ).fetchone()[0]
    finally:
        conn.close()


def assert_self_contained_report(index: Path) -> None:
    assert index.is_file() and index.name == "index.html"
    text = index.read_text()
    assert text.lstrip().lower().startswith("<!doctype html>")
    assert not re.search(r"(src|href)\s*=\s*['\"]?\s*(https?:)?//", text, re.I), "external resource"
    assert "http://" not in text and "https://" not in text
    assert "<script" not in text.lower() and "<link" not in text.lower()
    images = re.findall(r"<img\b[^>]*\bsrc\s*=\s*['\"]([^'\"]+)['\"]", text, re.I)
    assert images, "the report has no plots"
    for src in images:
        assert src.startswith("data:image/png;base64,"), src[:60]
        assert base64.b64decode(src.split(",", 1)[1]).startswith(b"\x89PNG\r\n\x1a\n")


@pytest.fixture
def spec_file(tmp_path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_SPEC)
    return path


@pytest.fixture(scope="module")
def populated(tmp_path_factory):
    """A store holding one experiment run and one (short, failing) phenomenon run."""
    root = tmp_path_factory.mktemp("populated")
    spec = root / "tiny.yaml"
    spec.write_text(TINY_SPEC)
    store = root / "store"
    assert main(["run", str(spec), "--store", str(store), "--no-report", "--run-id", "tiny-run"]) == 0
    assert main(["run", "grokking", "--quick", "--seeds", "2", "--set", "recipe.steps=30", "--set",
                 "recipe.probe_log_points=0", "--store", str(store), "--no-report", "--run-id", "grok-run"]) == 0
    return {"store": store, "experiment": "tiny-run", "phenomenon": "grok-run"}


# ---------------------------------------------------------------- list


def test_list(capsys):
    code, out, err = cli(capsys, "list")
    assert code == 0 and "grokking" in out and err == ""


def test_list_json(capsys):
    code, out, _ = cli(capsys, "list", "--json")
    assert code == 0
    entries = strict_json(out)
    assert isinstance(entries, list)
    grokking = next(e for e in entries if e["name"] == "grokking")
    assert grokking["summary"] and grokking["source"]


# ---------------------------------------------------------------- run


def test_run_spec_json(capsys, tmp_path, spec_file):
    store = tmp_path / "store"
    code, out, err = cli(capsys, "run", spec_file, "--json", "--store", store)
    assert code == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == 1, "with --json, stdout holds only the JSON object"
    payload = strict_json(lines[-1])
    assert payload["status"] == "finished" and payload["seeds"] == [0, 1]
    assert set(payload["final"]) == TINY_METRICS
    for values in payload["final"].values():
        assert set(values) == {"0", "1"} and all(isinstance(v, float) for v in values.values())
    assert 0 <= payload["final"]["accuracy/test"]["0"] <= 1

    record = Store(store, create=False).get_run(payload["run_id"])
    assert record.status == "finished" and record.name == "tiny" and record.seeds == [0, 1]
    assert run_count(store) == 1
    # the final values are the store's
    frame = Store(store).metrics(payload["run_id"])
    last = frame[(frame["step"] == 20) & (frame["name"] == "loss/train")].set_index("seed")["value"]
    assert payload["final"]["loss/train"]["1"] == pytest.approx(last[1])

    report = Path(payload["report"])
    assert report.is_absolute() or (tmp_path / report).exists()
    assert_self_contained_report(report if report.is_absolute() else tmp_path / report)
    assert "Traceback" not in out + err


def test_run_spec_human_output(capsys, tmp_path, spec_file):
    code, out, _ = cli(capsys, "run", spec_file, "--store", tmp_path / "s", "--no-report", "--seeds", "3")
    assert code == 0
    assert "finished" in out and "accuracy/test" in out and "[0, 1, 2]" in out
    assert "report:" not in out
    assert not (tmp_path / "s" / "reports").exists()


def test_run_phenomenon_json_reports_a_verdict_and_exits_0(capsys, tmp_path):
    store = tmp_path / "store"
    code, out, err = cli(capsys, "run", "grokking", "--quick", "--set", "recipe.steps=60", "--seeds", "2",
                         "--json", "--no-report", "--store", store)
    # `run` is not `verify`: a signature that does not hold is reported, not an error
    assert code == 0, err
    payload = strict_json(out.strip().splitlines()[-1])
    assert payload["status"] == "finished" and payload["seeds"] == [0, 1] and payload["report"] is None
    verdict = payload["verdict"]
    assert verdict["ok"] is False and verdict["seeds"] == [0, 1] and len(verdict["passed"]) == 2
    assert all(verdict["failures"])  # each seed says why
    assert set(payload["final"]) == {"grokking", "no-weight-decay"}
    for arm in payload["final"].values():
        assert set(arm["accuracy/test"]) == {"0", "1"}
    # the verdict line goes with the human output (stderr under --json)
    assert re.search(r"^verified grokking: FAIL \(", err, re.M)
    store_ = Store(store, create=False)
    assert store_.get_run(payload["run_id"]).kind == "phenomenon"
    assert sorted(c.arm for c in store_.children(payload["run_id"])) == ["grokking", "no-weight-decay"]
    assert not (store / "reports").exists()


# ---------------------------------------------------------------- verify


def test_verify_failing_signature_exits_1(capsys, tmp_path):
    store = tmp_path / "store"
    code, out, _ = cli(capsys, "verify", "grokking", "--quick", "--seeds", "2", "--set", "recipe.steps=40",
                       "--store", store)
    last = out.strip().splitlines()[-1]
    match = VERIFY_LINE.match(last)
    assert match, last
    assert last.startswith("verified grokking: FAIL (0/2 seeds hold, 2 needed; seed 0: ")
    assert code == 1
    run_line = next(line for line in out.splitlines() if line.startswith("run "))
    run_id = run_line.split()[1]
    assert Store(store, create=False).get_run(run_id).status == "finished"

    # re-checking the stored run gives the same verdict and exit code
    code, out, _ = cli(capsys, "verify", "--run", run_id, "--store", store)
    assert code == 1 and out.strip().splitlines()[-1] == last
    assert run_count(store) == 3  # the parent and its two arms, nothing new


# ---------------------------------------------------------------- show / runs


def test_show(capsys, populated):
    code, out, err = cli(capsys, "show", populated["experiment"], "--store", populated["store"])
    assert code == 0, err
    assert populated["experiment"] in out and "finished" in out
    for metric in TINY_METRICS:
        assert metric in out


def test_show_phenomenon(capsys, populated):
    code, out, _ = cli(capsys, "show", populated["phenomenon"], "--store", populated["store"])
    assert code == 0
    assert "signature holds" in out
    # every arm and metric name whole, even though stdout is not a terminal
    for arm in ("grokking", "no-weight-decay"):
        for metric in ("accuracy/train", "accuracy/test", "weight_norm"):
            assert re.search(rf"\b{arm}\b\W+{metric}\b", out), (arm, metric)
    assert "…" not in out


def test_show_json(capsys, populated):
    code, out, _ = cli(capsys, "show", populated["phenomenon"], "--store", populated["store"], "--json")
    assert code == 0
    payload = strict_json(out.strip().splitlines()[-1])
    assert payload["run_id"] == populated["phenomenon"] and payload["status"] == "finished"
    assert payload["verdict"]["ok"] is False
    rows = {(r["arm"], r["metric"]) for r in payload["summary"]}
    assert ("grokking", "accuracy/test") in rows and ("no-weight-decay", "weight_norm") in rows
    for r in payload["summary"]:
        assert r["n"] == 2 and len(r["values"]) == 2


def test_runs(capsys, populated):
    code, out, _ = cli(capsys, "runs", "--store", populated["store"])
    assert code == 0
    assert populated["experiment"] in out and populated["phenomenon"] in out
    code, out, _ = cli(capsys, "runs", "--store", populated["store"], "--json")
    listed = {r["run_id"]: r for r in strict_json(out)}
    assert set(listed) == {populated["experiment"], populated["phenomenon"]}  # arms are not listed
    assert listed[populated["phenomenon"]]["kind"] == "phenomenon"
    assert all(r["status"] == "finished" for r in listed.values())


# ---------------------------------------------------------------- report / export


def test_report(capsys, tmp_path, populated):
    out_dir = tmp_path / "rep"
    code, out, err = cli(capsys, "report", populated["phenomenon"], "-o", out_dir, "--store", populated["store"])
    assert code == 0, err
    assert out.strip() == f"report: {out_dir / 'index.html'}"
    assert_self_contained_report(out_dir / "index.html")
    assert list(out_dir.glob("*.png"))
    html = (out_dir / "index.html").read_text()
    assert "verified grokking: FAIL" in html and populated["phenomenon"] in html


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
@pytest.mark.parametrize("which", ["experiment", "phenomenon"])
def test_export(capsys, tmp_path, populated, fmt, which):
    run_id = populated[which]
    target = tmp_path / f"out.{fmt}"
    code, out, err = cli(capsys, "export", run_id, "--format", fmt, "-o", target, "--store", populated["store"])
    assert code == 0, err
    frame = pd.read_csv(target) if fmt == "csv" else pd.read_parquet(target)
    assert list(frame.columns) == EXPORT_COLUMNS
    ids = [run_id] + ([f"{run_id}.grokking", f"{run_id}.no-weight-decay"] if which == "phenomenon" else [])
    expected = metric_row_count(populated["store"], ids)
    assert expected > 0 and len(frame) == expected
    assert out.strip() == f"wrote {expected} rows to {target}"
    assert set(frame["run_id"]) == (set(ids) - {run_id} if which == "phenomenon" else {run_id})
    assert set(frame["seed"]) == {0, 1}


def test_export_default_path_is_in_the_working_directory(capsys, tmp_path, populated):
    code, _, _ = cli(capsys, "export", populated["experiment"], "--store", populated["store"])
    assert code == 0
    assert list(pd.read_csv(tmp_path / f"{populated['experiment']}.csv").columns) == EXPORT_COLUMNS


# ---------------------------------------------------------------- bad input

BAD_FILES = {
    "directory.yaml": None,
    "binary.yaml": bytes(range(256)) * 8,
    "broken.yaml": b"a: [1, 2\n",
    "broken.toml": b"task = [\n",
    "list.yaml": b"- 1\n- 2\n",
}

# argv (SPEC: the tiny spec file) -> fragments the one error line must hold
BAD_RUNS = {
    "unknown phenomenon": (["run", "grokkin"], ["'grokkin'", "grokking", "did you mean 'grokking'"]),
    "unknown spec key": (["run", "SPEC", "--set", "recipe.lrr=1"],
                         ["recipe.lrr", "unknown key", "valid:", "lr", "did you mean 'lr'"]),
    "unknown top-level key": (["run", "SPEC", "--set", "recipee.lr=1"], ["recipee", "did you mean 'recipe'"]),
    "lr not a number": (["run", "SPEC", "--set", "recipe.lr=abc"], ["recipe.lr", "number", "'abc'"]),
    "negative lr": (["run", "SPEC", "--set", "recipe.lr=-1"], ["recipe.lr", "greater than 0", "-1"]),
    "train_fraction 0": (["run", "grokking", "--quick", "--set", "task.train_fraction=0"],
                         ["task.train_fraction", "greater than 0"]),
    "unknown component": (["run", "SPEC", "--set", "model.name=mlpp"],
                          ["model.name", "mlpp", "lora, mlp, random-features, torch-module, transformer", "did you mean 'mlp'"]),
    "override not key=value": (["run", "SPEC", "--set", "recipe.lr"], ["--set", "key=value"]),
    "batch larger than data": (["run", "SPEC", "--set", "recipe.batch_size=100000"], ["recipe.batch_size", "64"]),
    "quick on a spec file": (["run", "SPEC", "--quick"], ["--quick", "phenomena"]),
    "spec file is a directory": (["run", "directory.yaml"], ["directory.yaml", "cannot read"]),
    "not a file nor a phenomenon": (["run", "somedir"], ["'somedir'", "neither", "grokking"]),
    "missing spec file": (["run", "missing.yaml"], ["missing.yaml", "not found"]),
    "binary spec file": (["run", "binary.yaml"], ["binary.yaml", "cannot read"]),
    "invalid YAML": (["run", "broken.yaml"], ["broken.yaml", "not valid YAML"]),
    "invalid TOML": (["run", "broken.toml"], ["broken.toml", "not valid TOML"]),
    "spec not a mapping": (["run", "list.yaml"], ["list.yaml", "mapping", "task"]),
    "seeds 0": (["run", "SPEC", "--seeds", "0"], ["--seeds"]),
    "missing target": (["run"], ["target", "--help"]),
    "verify with neither name nor --all": (["verify"], ["--all", "grokking"]),
    "verify with both": (["verify", "grokking", "--all"], ["--all", "grokking"]),
    "verify unknown phenomenon": (["verify", "grokkin"], ["did you mean 'grokking'"]),
}


def check_one_error_line(code: int, out: str, err: str, fragments: list[str]) -> str:
    assert code == 2, (out, err)
    assert "Traceback" not in out and "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1 and err.endswith("\n"), err
    line = lines[0]
    assert line.startswith("error: ") and len(line) > len("error: ") + 5
    for fragment in fragments:
        assert fragment in line, (fragment, line)
    return line


@pytest.fixture
def bad_inputs(tmp_path, spec_file):
    (tmp_path / "somedir").mkdir()
    for name, content in BAD_FILES.items():
        if content is None:
            (tmp_path / name).mkdir()
        else:
            (tmp_path / name).write_bytes(content)
    return tmp_path


@pytest.mark.parametrize("case", list(BAD_RUNS))
def test_bad_input_is_one_error_line_and_records_nothing(capsys, bad_inputs, spec_file, case):
    argv, fragments = BAD_RUNS[case]
    argv = [str(spec_file) if a == "SPEC" else a for a in argv]
    store = bad_inputs / "store"
    code, out, err = cli(capsys, *argv, "--store", store)
    check_one_error_line(code, out, err, fragments)
    assert run_count(store) == 0, "a bad input left a run in the store"
    assert not (bad_inputs / "learnscope-runs").exists()


@pytest.mark.parametrize("command", [["show", "nope-run"], ["report", "nope-run"], ["export", "nope-run"],
                                     ["report", "tiny-run", "nope-run"]])
def test_unknown_run_id(capsys, populated, command):
    before = run_count(populated["store"])
    code, out, err = cli(capsys, *command, "--store", populated["store"])
    line = check_one_error_line(code, out, err, ["unknown run id 'nope-run'", "recent runs:"])
    assert populated["experiment"] in line and populated["phenomenon"] in line  # names what is valid
    assert run_count(populated["store"]) == before


def test_show_near_miss_suggests_the_run(capsys, populated):
    code, out, err = cli(capsys, "show", "tiny-rn", "--store", populated["store"])
    check_one_error_line(code, out, err, ["did you mean 'tiny-run'"])


def test_unknown_export_format(capsys, tmp_path, populated):
    code, out, err = cli(capsys, "export", populated["experiment"], "--format", "xml", "-o", tmp_path / "x.xml",
                         "--store", populated["store"])
    check_one_error_line(code, out, err, ["'xml'", "csv", "parquet"])
    assert not (tmp_path / "x.xml").exists()


def test_show_without_a_store(capsys, tmp_path):
    code, out, err = cli(capsys, "show", "some-run", "--store", tmp_path / "nowhere")
    check_one_error_line(code, out, err, ["no store", "--store", "LEARNSCOPE_STORE"])
    assert not (tmp_path / "nowhere").exists()


def test_unknown_command(capsys):
    code, out, err = cli(capsys, "frobnicate")
    check_one_error_line(code, out, err, ["frobnicate"])


# ---------------------------------------------------------------- where the store is


def test_default_store_is_in_the_working_directory(capsys, tmp_path, spec_file):
    code, out, _ = cli(capsys, "run", spec_file, "--json", "--no-report")
    assert code == 0
    run_id = strict_json(out.strip().splitlines()[-1])["run_id"]
    assert (tmp_path / "learnscope-runs" / "runs.db").is_file()
    assert Store(tmp_path / "learnscope-runs", create=False).get_run(run_id).status == "finished"
    code, out, _ = cli(capsys, "runs", "--json")
    assert [r["run_id"] for r in strict_json(out)] == [run_id]


def test_env_var_and_store_option_move_the_store(capsys, tmp_path, spec_file, monkeypatch):
    monkeypatch.setenv("LEARNSCOPE_STORE", str(tmp_path / "from-env"))
    code, out, _ = cli(capsys, "run", spec_file, "--json", "--no-report")
    assert code == 0
    env_run = strict_json(out.strip().splitlines()[-1])["run_id"]
    assert run_count(tmp_path / "from-env") == 1
    assert not (tmp_path / "learnscope-runs").exists()

    # --store wins over the environment variable
    code, out, _ = cli(capsys, "run", spec_file, "--json", "--no-report", "--store", tmp_path / "explicit")
    assert code == 0
    explicit_run = strict_json(out.strip().splitlines()[-1])["run_id"]
    assert run_count(tmp_path / "explicit") == 1 and run_count(tmp_path / "from-env") == 1

    # and the reading commands follow the same rule
    code, out, _ = cli(capsys, "runs", "--json")
    assert [r["run_id"] for r in strict_json(out)] == [env_run]
    code, out, _ = cli(capsys, "show", explicit_run, "--store", tmp_path / "explicit")
    assert code == 0 and explicit_run in out
    code, _, err = cli(capsys, "show", explicit_run)
    assert code == 2 and "unknown run id" in err


# ---------------------------------------------------------------- the real program


def run_program(args, cwd: Path, store: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "LEARNSCOPE_STORE"}
    env["OMP_NUM_THREADS"] = "1"
    if store is not None:
        env["LEARNSCOPE_STORE"] = str(store)
    return subprocess.run([sys.executable, "-m", "learnscope", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_program_run_spec_json(tmp_path, spec_file):
    store = tmp_path / "env-store"
    proc = run_program(["run", spec_file, "--json"], cwd=tmp_path, store=store)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    payload = strict_json(proc.stdout.strip().splitlines()[-1])
    assert payload["status"] == "finished" and set(payload["final"]) == TINY_METRICS
    assert Store(store, create=False).get_run(payload["run_id"]).status == "finished"
    assert not (tmp_path / "learnscope-runs").exists()
    report = Path(payload["report"])
    assert_self_contained_report(report if report.is_absolute() else tmp_path / report)


@pytest.mark.slow
def test_program_verify_fail_exit_code(tmp_path):
    proc = run_program(["verify", "grokking", "--quick", "--seeds", "2", "--set", "recipe.steps=30",
                        "--set", "recipe.probe_log_points=0", "--store", tmp_path / "s"], cwd=tmp_path)
    last = proc.stdout.strip().splitlines()[-1]
    assert VERIFY_LINE.match(last), last
    assert "FAIL" in last and proc.returncode == 1
    assert "Traceback" not in proc.stdout + proc.stderr


@pytest.mark.slow
def test_program_bad_input(tmp_path):
    proc = run_program(["run", "grokkin", "--store", tmp_path / "s"], cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: ")
    assert "did you mean 'grokking'" in proc.stderr and "Traceback" not in proc.stderr
    assert run_count(tmp_path / "s") == 0


def test_report_figures_with_long_or_non_ascii_captions_get_file_names(tmp_path):
    """A caption names its PNG; one past a file name's 255 bytes once crashed the
    report with an OSError (a long signature caption)."""
    from matplotlib.figure import Figure

    from learnscope.report import save_figures
    from learnscope.store.sqlite import Store

    long = "forgetting of experience 0 against the rank α of the adapters ⊥ " * 8
    captions = [long + "quick", long + "full", "α ⊥ β"]
    figures = [(caption, Figure()) for caption in captions]
    save_figures(Store(tmp_path / "store"), [], tmp_path, figures)
    names = sorted(p.name for p in tmp_path.glob("*.png"))
    assert len(names) == 3 and all(len(name.encode()) <= 120 and name.isascii() for name in names)
