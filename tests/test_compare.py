"""`learnscope compare` and `learnscope.compare`: two runs' final metrics
paired by seed (B − A, its 95% t-interval, the paired t-test, n) and the
diff of their specs. The statistics are checked against scipy on known
per-seed values written straight into a store."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
from scipy import stats as scipy_stats

from helpers import cli
from learnscope.cli import SPEC_DIFF_KEY, main
from learnscope.compare import compare_runs, flatten, spec_diff
from learnscope.errors import LearnscopeError
from learnscope.runs import Run
from learnscope.stats import paired_difference
from learnscope.store.sqlite import Store

SPEC = {"task": {"name": "gaussian-mixture", "dim": 4}, "model": {"name": "mlp", "hidden": [8]},
        "recipe": {"optimizer": "sgd", "lr": 0.1, "steps": 20}}
FIELDS = {"mean_difference", "ci_low", "ci_high", "p_value", "n"}
TINY_SPEC = """\
task: {name: gaussian-mixture, classes: 3, dim: 4, samples: 64, test_samples: 32}
model: {name: mlp, hidden: [8]}
recipe: {optimizer: sgd, lr: 0.1, steps: 20, probe_every: 10, probe_log_points: 0}
probes: [accuracy, loss]
seeds: 3
"""


def _no_nan(token):
    raise ValueError(f"{token} is not JSON")


def last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1], parse_constant=_no_nan)


def one_error_line(code: int, out: str, err: str, *fragments: str) -> str:
    assert code == 2, (out, err)
    assert "Traceback" not in out + err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def write_run(store: Store, run_id: str, finals: dict[str, dict[int, float]], spec: dict | None = None,
              seeds: list[int] | None = None, diverged: tuple[int, ...] = (), **record) -> None:
    """A run whose last recorded value of each metric per seed is `finals`;
    an earlier step holds other values, so that reading those would show."""
    seeds = seeds if seeds is not None else sorted({s for values in finals.values() for s in values})
    store.create_run(run_id, record.pop("name", "demo"), spec or SPEC, seeds, **record)
    for step, offset in ((0, 100.0), (10, 0.0)):
        for name, values in finals.items():
            present = [s for s in seeds if s in values]
            store.write_metrics(run_id, step, present, {name: [values[s] + offset for s in present]})
    for seed in diverged:
        store.add_event(run_id, "diverged", {"reason": "test"}, seed=seed, step=10)
    store.set_status(run_id, "finished")


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "store")
    yield s
    s.close()


def by_seed(values) -> dict[int, float]:
    return dict(enumerate(values))


# ---------------------------------------------------------------- the statistics


@pytest.mark.parametrize("a, b", [
    ([0.5, 0.6, 0.7, 0.65], [0.55, 0.7, 0.72, 0.8]),
    ([1.0, 2.0], [1.5, 3.5]),
    (list(np.random.default_rng(1).normal(0.8, 0.05, 16)), list(np.random.default_rng(2).normal(0.82, 0.05, 16))),
])
def test_paired_difference_agrees_with_scipy(a, b):
    got = paired_difference(a, b)
    d = np.array(b) - np.array(a)
    n = len(d)
    half = scipy_stats.t.ppf(0.975, n - 1) * np.std(d, ddof=1) / math.sqrt(n)
    assert got.n == n and got.note is None
    assert got.mean_difference == pytest.approx(d.mean(), rel=1e-12)
    assert (got.mean_a, got.mean_b) == (pytest.approx(np.mean(a)), pytest.approx(np.mean(b)))
    assert got.ci_low == pytest.approx(d.mean() - half, rel=1e-10)
    assert got.ci_high == pytest.approx(d.mean() + half, rel=1e-10)
    assert got.p_value == pytest.approx(scipy_stats.ttest_rel(b, a).pvalue, rel=1e-10)
    assert paired_difference(b, a).mean_difference == pytest.approx(-got.mean_difference)  # B − A, not A − B


@pytest.mark.parametrize("n", [2, 4, 16])
def test_t_interval_covers_at_small_seed_counts(n):
    """The reason for the t-interval: 95% coverage at 2 seeds already."""
    rng = np.random.default_rng(n)
    draws = 600
    covered = sum(lo <= 0.3 <= hi for lo, hi in
                  ((s.ci_low, s.ci_high) for s in (paired_difference(np.zeros(n), rng.normal(0.3, 1.0, n))
                                                   for _ in range(draws))))
    assert 0.92 <= covered / draws <= 0.98


def test_degenerate_pairs_are_defined_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        same = paired_difference([0.25, 0.5, 0.75], [0.25, 0.5, 0.75])
        shifted = paired_difference([0.25, 0.5, 0.75], [0.5, 0.75, 1.0])
        one = paired_difference([0.2, float("nan")], [0.5, 0.1])
        none = paired_difference([float("nan")], [1.0])
        tiny = paired_difference([0.1, 0.2, 0.3], [0.1 + 1e-3, 0.2 + 1e-3 + 1e-17, 0.3 + 1e-3 - 1e-17])
    assert (same.mean_difference, same.ci_low, same.ci_high, same.p_value, same.n) == (0.0, 0.0, 0.0, 1.0, 3)
    assert "no spread" in same.note
    assert (shifted.ci_low, shifted.ci_high) == (shifted.mean_difference,) * 2 and shifted.p_value == 0.0
    assert shifted.mean_difference == pytest.approx(0.25)
    assert one.n == 1 and one.mean_difference == pytest.approx(0.3) and one.note
    assert math.isnan(one.ci_low) and math.isnan(one.ci_high) and math.isnan(one.p_value)
    assert none.n == 0 and math.isnan(none.mean_difference) and none.note
    assert all(math.isfinite(v) for v in (tiny.ci_low, tiny.ci_high, tiny.p_value))


def test_spec_diff():
    a = {"task": {"name": "t", "p": 97}, "recipe": {"lr": 0.1, "steps": 20, "wd": 1, "flag": True}, "probes": ["loss"],
         "seeds": 4, "extra": {}}
    b = {"task": {"name": "t", "p": 113}, "recipe": {"lr": 0.1, "steps": 20.0, "flag": 1}, "probes": ["loss", "accuracy"],
         "seeds": 4, "init_from": "r1"}
    assert flatten(a)["task.p"] == 97 and flatten(a)["extra"] == {}
    diff = spec_diff(a, b)
    assert diff.changed == {"task.p": (97, 113), "recipe.flag": (True, 1), "probes": (["loss"], ["loss", "accuracy"])}
    assert diff.only_a == {"recipe.wd": 1, "extra": {}} and diff.only_b == {"init_from": "r1"}
    assert not spec_diff(a, a) and diff


# ---------------------------------------------------------------- runs from a store


def test_compare_runs_agrees_with_scipy_on_final_values(store):
    acc_a, acc_b = [0.61, 0.72, 0.55, 0.68, 0.70], [0.66, 0.79, 0.54, 0.75, 0.77]
    loss_a, loss_b = [1.2, 1.1, 1.4, 1.3, 1.0], [1.0, 0.9, 1.5, 1.0, 0.8]
    write_run(store, "a", {"accuracy/test": by_seed(acc_a), "loss/test": by_seed(loss_a), "only/a": by_seed([1] * 5)})
    write_run(store, "b", {"accuracy/test": by_seed(acc_b), "loss/test": by_seed(loss_b), "only/b": by_seed([1] * 5)},
              spec={**SPEC, "recipe": {**SPEC["recipe"], "lr": 0.3}})
    result = compare_runs(Run(store, "a"), Run(store, "b"))
    assert result.seeds == [0, 1, 2, 3, 4] and result.left_out == {}
    assert result.only_a == ["only/a"] and result.only_b == ["only/b"]
    found = result.by_key()
    assert list(found) == ["accuracy/test", "loss/test"]
    for name, (a, b) in {"accuracy/test": (acc_a, acc_b), "loss/test": (loss_a, loss_b)}.items():
        s = found[name].stats
        reference = scipy_stats.ttest_rel(b, a)
        low, high = reference.confidence_interval(0.95)
        assert s.n == 5 and found[name].seeds == (0, 1, 2, 3, 4)
        assert s.mean_difference == pytest.approx(np.mean(np.subtract(b, a)))
        assert (s.ci_low, s.ci_high) == (pytest.approx(low), pytest.approx(high))
        assert s.p_value == pytest.approx(reference.pvalue)
    assert result.spec_diff.changed == {"recipe.lr": (0.1, 0.3)}
    only_accuracy = compare_runs(Run(store, "a"), Run(store, "b"), ["accuracy/test"])
    assert [d.key for d in only_accuracy.differences] == ["accuracy/test"]


def test_seeds_pair_by_number_leaving_out_missing_and_diverged(store):
    a = {0: 0.5, 1: 0.6, 2: 0.7, 3: 0.8, 5: 0.4}
    b = {0: 0.55, 1: 0.9, 2: 0.71, 4: 0.3, 5: 0.5}
    write_run(store, "a", {"m": a}, diverged=(5,))
    write_run(store, "b", {"m": b}, diverged=(1,))
    result = compare_runs(Run(store, "a"), Run(store, "b"))
    assert result.seeds == [0, 2]
    assert result.left_out == {1: "diverged in B", 3: "only in A", 4: "only in B", 5: "diverged in A"}
    d = result.by_key()["m"]
    assert d.seeds == (0, 2) and d.stats.n == 2
    assert d.stats.p_value == pytest.approx(scipy_stats.ttest_rel([b[0], b[2]], [a[0], a[2]]).pvalue)


def test_non_finite_final_value_leaves_the_pair_out_of_that_metric(store):
    write_run(store, "a", {"m": by_seed([0.1, float("nan"), 0.3, 0.2]), "k": by_seed([1.0, 2.0, 3.0, 4.0])})
    write_run(store, "b", {"m": by_seed([0.2, 0.5, 0.5, 0.1]), "k": by_seed([1.5, 2.0, 3.5, 4.5])})
    found = compare_runs(Run(store, "a"), Run(store, "b")).by_key()
    assert found["m"].seeds == (0, 2, 3) and found["m"].stats.n == 3
    assert found["k"].stats.n == 4


def phenomenon(store: Store, run_id: str, arms: dict[str, dict[str, dict[int, float]]],
               diverged: dict[str, tuple[int, ...]] | None = None) -> None:
    seeds = sorted({s for finals in arms.values() for values in finals.values() for s in values})
    spec = {"phenomenon": "test-pairs", "quick": True, "arms": {arm: SPEC for arm in arms}}
    store.create_run(run_id, "test-pairs", spec, seeds, kind="phenomenon")
    for arm, finals in arms.items():
        write_run(store, f"{run_id}.{arm}", finals, seeds=seeds, name="test-pairs", parent=run_id, arm=arm,
                  diverged=(diverged or {}).get(arm, ()))
    store.set_status(run_id, "finished")


def test_phenomenon_runs_pair_arm_with_arm_of_the_same_name(store):
    phenomenon(store, "p", {"treated": {"m": by_seed([0.1, 0.2, 0.4])}, "control": {"m": by_seed([0.5, 0.5, 0.6])},
                            "extra": {"m": by_seed([0.0, 0.0, 0.0])}})
    phenomenon(store, "q", {"control": {"m": by_seed([0.6, 0.4, 0.9])}, "treated": {"m": by_seed([0.3, 0.2, 0.8])}},
               diverged={"control": (2,)})
    result = compare_runs(Run(store, "p"), Run(store, "q"))
    assert result.arms == [("treated", "treated"), ("control", "control")]
    assert result.seeds == [0, 1]  # seed 2 diverged in one arm of q: left out of q, so of the pairing
    found = result.by_key()
    assert set(found) == {"treated:m", "control:m"}
    assert found["treated:m"].arm == "treated" and found["treated:m"].metric == "m"
    assert found["treated:m"].stats.mean_difference == pytest.approx(np.mean([0.3 - 0.1, 0.2 - 0.2]))
    assert found["control:m"].stats.p_value == pytest.approx(scipy_stats.ttest_rel([0.6, 0.4], [0.5, 0.5]).pvalue)
    assert result.spec_diff.only_a == {f"arms.extra.{k}": v for k, v in flatten(SPEC).items()}

    assert [d.key for d in compare_runs(Run(store, "p"), Run(store, "q"), ["treated:m"]).differences] == ["treated:m"]
    assert len(compare_runs(Run(store, "p"), Run(store, "q"), ["m"]).differences) == 2

    # one arm against one arm, whatever their names: as they are
    write_run(store, "single", {"m": by_seed([0.0, 0.1, 0.2])})
    across = compare_runs(Run(store, "p.control"), Run(store, "q.treated"))
    assert across.arms == [("control", "treated")] and list(across.by_key()) == ["m"]
    assert list(compare_runs(Run(store, "single"), Run(store, "p.treated")).by_key()) == ["m"]
    with pytest.raises(LearnscopeError, match="p.treated"):
        compare_runs(Run(store, "p"), Run(store, "single"))


# ---------------------------------------------------------------- the command


@pytest.fixture
def two_runs(tmp_path):
    path = tmp_path / "store"
    s = Store(path)
    write_run(s, "a", {"accuracy/test": by_seed([0.5, 0.6, 0.7]), "loss/test": by_seed([1.0, 1.0, 1.0]),
                       "lonely": by_seed([1.0, 1.0, 1.0])})
    write_run(s, "b", {"accuracy/test": by_seed([0.6, 0.8, 0.75]), "loss/test": by_seed([1.0, 1.0, 1.0])},
              spec={**SPEC, "model": {"name": "mlp", "hidden": [16]}, "init_from": "a"})
    write_run(s, "one-seed", {"accuracy/test": {0: 0.9}, "loss/test": {0: 0.1}}, seeds=[0, 7])
    write_run(s, "other-seeds", {"accuracy/test": {5: 0.9, 6: 0.8}}, seeds=[5, 6])
    write_run(s, "other-metrics", {"weight_norm": by_seed([3.0, 4.0, 5.0])})
    phenomenon(s, "phen", {"x": {"accuracy/test": by_seed([0.1, 0.2, 0.3])}})
    s.close()
    return path


def test_json_is_one_object_keyed_by_metric(capsys, two_runs):
    code, out, err = cli(capsys, "compare", "a", "b", "--store", two_runs, "--json")
    assert code == 0, err
    payload = last_json(out)
    assert set(payload) == {"accuracy/test", "loss/test", SPEC_DIFF_KEY}
    for name in ("accuracy/test", "loss/test"):
        assert FIELDS <= set(payload[name]) and payload[name]["n"] == 3
    accuracy = payload["accuracy/test"]
    reference = scipy_stats.ttest_rel([0.6, 0.8, 0.75], [0.5, 0.6, 0.7])
    assert accuracy["mean_difference"] == pytest.approx(0.35 / 3)
    assert accuracy["p_value"] == pytest.approx(reference.pvalue)
    assert (accuracy["ci_low"], accuracy["ci_high"]) == tuple(pytest.approx(v) for v in reference.confidence_interval())
    assert payload["loss/test"]["p_value"] == 1.0 and payload["loss/test"]["ci_low"] == 0.0  # identical values
    assert payload[SPEC_DIFF_KEY] == {"changed": {"model.hidden": [[8], [16]]}, "only_a": {},
                                      "only_b": {"init_from": "a"}}


def test_json_with_one_paired_seed_has_null_ci_and_p(capsys, two_runs):
    code, out, err = cli(capsys, "compare", "a", "one-seed", "--store", two_runs, "--json", "--metric", "accuracy/test")
    assert code == 0, err
    entry = last_json(out)["accuracy/test"]
    assert entry["n"] == 1 and entry["mean_difference"] == pytest.approx(0.4)
    assert entry["ci_low"] is None and entry["ci_high"] is None and entry["p_value"] is None and entry["note"]


def test_human_output_has_the_table_and_the_spec_diff(capsys, two_runs):
    code, out, err = cli(capsys, "compare", "a", "b", "--store", two_runs)
    assert code == 0, err
    for fragment in ("A mean", "B mean", "difference [95% CI]", "accuracy/test", "only in A: lonely",
                     "model.hidden", "[16]", "init_from", "(absent)", "paired seeds 0 1 2"):
        assert fragment in out, fragment
    code, out, _ = cli(capsys, "compare", "a", "a", "--store", two_runs)
    assert code == 0 and "specs: identical" in out


@pytest.mark.parametrize("argv, fragments", [
    (["a", "nope-run"], ["unknown run id 'nope-run'", "recent runs:"]),
    (["nope-run", "b"], ["unknown run id 'nope-run'"]),
    (["a", "b", "--metric", "accuracy/tset"], ["'accuracy/tset'", "valid: accuracy/test, loss/test",
                                               "did you mean 'accuracy/test'"]),
    (["a", "b", "--metric", "lonely"], ["'lonely'", "not recorded in both"]),
    (["a", "other-seeds"], ["no seed in common", "seed 5 only in B"]),
    (["a", "other-metrics"], ["no final metric in common", "weight_norm"]),
    (["phen", "a"], ["phenomenon", "phen.x"]),
])
def test_bad_input_is_one_line_exit_2(capsys, two_runs, argv, fragments):
    code, out, err = cli(capsys, "compare", *argv, "--store", two_runs)
    one_error_line(code, out, err, *fragments)
    assert out == ""


def test_compare_two_real_runs(capsys, tmp_path):
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY_SPEC)
    store = tmp_path / "store"
    for run_id, lr in (("slow", "0.1"), ("fast", "0.3")):
        assert main(["run", str(spec), "--set", f"recipe.lr={lr}", "--store", str(store), "--no-report",
                     "--run-id", run_id]) == 0
    code, out, err = cli(capsys, "compare", "slow", "fast", "--store", store, "--json")
    assert code == 0, err
    payload = last_json(out)
    assert set(payload) == {"accuracy/train", "accuracy/test", "loss/train", "loss/test", SPEC_DIFF_KEY}
    assert payload[SPEC_DIFF_KEY]["changed"] == {"recipe.lr": [0.1, 0.3]}
    st = Store(store, create=False)
    finals = {run_id: Run(st, run_id).final() for run_id in ("slow", "fast")}
    for name in ("accuracy/test", "loss/train"):
        a, b = (frame[frame["name"] == name].sort_values("seed")["value"].to_numpy(float) for frame in finals.values())
        assert payload[name]["n"] == 3 and payload[name]["seeds"] == [0, 1, 2]
        assert payload[name]["mean_difference"] == pytest.approx(float(np.mean(b - a)))
        if np.ptp(b - a) > 0:
            assert payload[name]["p_value"] == pytest.approx(scipy_stats.ttest_rel(b, a).pvalue)
    code, out, _ = cli(capsys, "compare", "slow", "fast", "--store", store)
    assert code == 0 and "recipe.lr" in out and "loss/train" in out
