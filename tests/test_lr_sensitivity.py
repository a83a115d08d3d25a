"""LR sensitivity (Wortsman et al.): the measure against a hand computation,
and read from a real sweep in the store, a diverged seed counting its
initial loss; shown by `show`, in the JSON and in the sweep report."""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import cli
from learnscope.errors import LearnscopeError
from learnscope.sensitivity import lr_sensitivity
from learnscope.store.sqlite import Store
from learnscope.sweep import Sweep
from learnscope.sweep import lr_sensitivity as sweep_sensitivity

SPEC = """\
task: {name: gaussian-mixture, classes: 3, dim: 4, samples: 64, test_samples: 32}
model: {name: mlp, hidden: [8]}
recipe: {optimizer: sgd, lr: 0.1, steps: 20, probe_every: 10, probe_log_points: 0, checkpoint_every: null}
probes: [loss]
seeds: 3
"""
RATES = ["0.01", "0.3", "1e5"]  # 1e5 drives the loss to inf or NaN


def by_hand(losses: list[list[float]], initial: list[float]) -> list[float]:
    """The definition written out with loops: per seed, the mean over rates of
    min(loss, initial loss) - the best loss, a non-finite loss counting the initial one."""
    out = []
    for s, start in enumerate(initial):
        column = [row[s] for row in losses]
        capped = [min(v, start) if math.isfinite(v) else start for v in column]
        finite = [v for v in column if math.isfinite(v)]
        out.append(sum(capped) / len(capped) - min(finite) if finite else math.nan)
    return out


def test_a_worked_example():
    losses = np.array([[1.0, 2.0], [0.5, 5.0], [3.0, np.nan]])
    # seed 0: capped 1.0, 0.5, 2.5 -> mean 4/3, best 0.5; seed 1: capped 2.0, 4.0, 4.0 -> mean 10/3, best 2.0
    assert lr_sensitivity(losses, np.array([2.5, 4.0])) == pytest.approx([4 / 3 - 0.5, 10 / 3 - 2.0])
    assert lr_sensitivity(np.full((4, 3), 0.7), np.ones(3)) == pytest.approx(np.zeros(3))  # a flat curve
    assert np.isnan(lr_sensitivity(np.array([[np.nan], [np.inf]]), np.ones(1))[0])
    with pytest.raises(ValueError, match="two or more"):
        lr_sensitivity(np.ones((1, 3)), np.ones(3))


finite_or_not = st.one_of(st.floats(0, 10), st.just(math.nan), st.just(math.inf))


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 6).flatmap(lambda rates: st.integers(1, 4).flatmap(lambda seeds: st.tuples(
    st.lists(st.lists(finite_or_not, min_size=seeds, max_size=seeds), min_size=rates, max_size=rates),
    st.lists(st.floats(0.1, 10), min_size=seeds, max_size=seeds)))))
def test_equals_the_definition_written_out(case):
    losses, initial = case
    expected = by_hand(losses, initial)
    got = lr_sensitivity(np.array(losses), np.array(initial))
    assert np.allclose(got, expected, equal_nan=True)


def metric_rows(store_dir: Path, run_id: str, name: str) -> dict[int, dict[int, float]]:
    """seed -> step -> value of one metric, read from the database directly."""
    conn = sqlite3.connect(Path(store_dir) / "runs.db")
    try:
        found: dict[int, dict[int, float]] = {}
        for seed, step, value in conn.execute("SELECT seed, step, value FROM metric_rows WHERE run_id = ? AND "
                                              "name = ?", (run_id, name)):
            found.setdefault(seed, {})[step] = float("nan") if value is None else value
        return found
    finally:
        conn.close()


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """A sweep of two widths x three rates, the highest diverging: (store dir, sweep id)."""
    root = tmp_path_factory.mktemp("lrs")
    spec = root / "tiny.yaml"
    spec.write_text(SPEC)
    from learnscope.cli import main

    assert main(["sweep", str(spec), "--grid", "recipe.lr=" + ",".join(RATES), "--grid", "model.hidden=[4],[8]",
                 "--store", str(root / "store"), "--run-id", "lrs", "--no-report"]) == 0
    return root / "store", "lrs"


def test_a_sweep_gives_each_curve_its_sensitivity(swept):
    store_dir, sweep_id = swept
    store = Store(store_dir)
    rows = sweep_sensitivity(Sweep(store, sweep_id))
    assert [row.group for row in rows] == [{"model.hidden": [4]}, {"model.hidden": [8]}]
    diverged_somewhere = False
    for row in rows:
        assert row.rates == [0.01, 0.3, 1e5] and row.seeds == [0, 1, 2] and not row.missing
        trials = [t for t in store.get_run(sweep_id).spec["trials"] if t["values"]["model.hidden"] == row.group[
            "model.hidden"]]
        trials.sort(key=lambda t: t["values"]["recipe.lr"])
        losses, initial = [], None
        for trial in trials:
            values = metric_rows(store_dir, trial["run_id"], "loss/test")
            last = max(values[0])
            diverged = store.diverged(trial["run_id"])
            diverged_somewhere |= bool(diverged)
            losses.append([math.nan if seed in diverged else values[seed][last] for seed in (0, 1, 2)])
            initial = [values[seed][0] for seed in (0, 1, 2)]  # every rate starts from the same weights
        assert initial is not None
        assert np.allclose(row.values, by_hand(losses, initial))
        assert all(v > 0 for v in row.values)
    # the highest rate diverged: its seeds are kept (at their initial loss), not left out
    assert diverged_somewhere


def test_rates_written_with_an_exponent_are_numbers(swept):
    # YAML 1.1 reads `1e5` (no dot) as text; specs and --grid read it as the float it is
    from learnscope.spec import parse_value

    assert parse_value("1e-3") == 0.001 and parse_value("[1e-3, 2]") == [0.001, 2] and parse_value("e5") == "e5"
    store_dir, sweep_id = swept
    assert Sweep(Store(store_dir), sweep_id).axes[0].values == [0.01, 0.3, 1e5]


def test_show_prints_it_and_json_carries_it(swept, capsys):
    store_dir, sweep_id = swept
    code, out, _ = cli(capsys, "show", sweep_id, "--store", store_dir)
    assert code == 0 and "LR sensitivity of loss/test over recipe.lr" in out
    code, out, _ = cli(capsys, "show", sweep_id, "--store", store_dir, "--json")
    payload = json.loads(out)
    expected = [row.values for row in sweep_sensitivity(Sweep(Store(store_dir), sweep_id))]
    assert np.allclose([row["values"] for row in payload["lr_sensitivity"]], expected)
    assert "lr_sensitivity_error" not in payload


def test_the_report_tables_it(swept, capsys):
    store_dir, sweep_id = swept
    code, out, _ = cli(capsys, "report", sweep_id, "--store", store_dir)
    assert code == 0
    page = next((Path(store_dir) / "reports" / sweep_id).glob("*.html")).read_text()
    assert "LR sensitivity of loss/test" in page


def test_bad_axis_or_metric_is_one_clear_line(swept):
    store_dir, sweep_id = swept
    sweep = Sweep(Store(store_dir), sweep_id)
    with pytest.raises(LearnscopeError, match="has no axis 'recipe.momentum'.*recipe.lr"):
        sweep_sensitivity(sweep, axis="recipe.momentum")
    with pytest.raises(LearnscopeError, match="needs two or more positive learning rates"):
        sweep_sensitivity(sweep, axis="model.hidden")
    with pytest.raises(LearnscopeError, match="recorded no 'loss/nope'"):
        sweep_sensitivity(sweep, metric="loss/nope")


def test_a_sweep_without_a_rate_axis_has_none(tmp_path, capsys):
    spec = tmp_path / "tiny.yaml"
    spec.write_text(SPEC.replace("seeds: 3", "seeds: 1"))
    assert cli(capsys, "sweep", spec, "--grid", "model.hidden=[4],[8]", "--store", tmp_path / "s", "--run-id", "w",
               "--no-report")[0] == 0
    assert sweep_sensitivity(Sweep(Store(tmp_path / "s"), "w")) == []
    code, out, _ = cli(capsys, "show", "w", "--store", tmp_path / "s")
    assert code == 0 and "LR sensitivity" not in out


def test_diverged_seeds_are_kept_only_when_asked(swept):
    from learnscope.results import arms_data

    store_dir, sweep_id = swept
    store = Store(store_dir)
    highest = next(t["run_id"] for t in store.get_run(sweep_id).spec["trials"] if t["values"]["recipe.lr"] == 1e5)
    record = store.get_run(highest)
    diverged = store.diverged(highest)
    assert diverged  # the fixture's highest rate diverges
    left = arms_data(store, [record])[""]
    assert left.seeds == [s for s in record.seeds if s not in diverged]
    kept = arms_data(store, [record], keep_diverged=True)[""]
    assert kept.seeds == record.seeds and kept.diverged == diverged
    final = kept.final_or_nan("loss/test")
    assert all(np.isnan(final[i]) == (seed in diverged) for i, seed in enumerate(record.seeds))
