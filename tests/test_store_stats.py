"""The run store (SQLite in WAL mode) and the seed statistics, the latter
against independent numpy references."""

from __future__ import annotations

import math
import sqlite3

import numpy as np
import pytest

from learnscope.errors import LearnscopeError, NotFoundError
from learnscope.stats import bootstrap_ci, summarize
from learnscope.store.sqlite import Store

SPEC = {"task": {"name": "gaussian-mixture"}, "model": {"name": "mlp"}}


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "store")
    yield s
    s.close()


# ---------------------------------------------------------------- store


def test_store_is_sqlite_in_wal_mode(store):
    assert store.db_path.is_file()
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal"
    # WAL is a property of the file: a fresh, independent connection sees it too
    other = sqlite3.connect(store.db_path)
    try:
        assert other.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal"
        tables = {r[0] for r in other.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        other.close()
    assert {"runs", "metrics", "events", "artifacts"} <= tables


def test_run_round_trip(store):
    with store.hold("r1"):
        store.create_run("r1", "demo", SPEC, [0, 3], kind="experiment")
        record = store.get_run("r1")
        assert (record.id, record.name, record.kind, record.status) == ("r1", "demo", "experiment", "running")
        assert record.spec == SPEC and record.seeds == [0, 3]
        assert record.finished is None and record.parent is None
    # recorded as running, but no process owns it any more: it reads back as interrupted
    record = store.get_run("r1")
    assert record.status == "interrupted" and "learnscope resume r1" in record.reason

    store.set_status("r1", "failed", "ValueError: boom")
    record = store.get_run("r1")
    assert record.status == "failed" and record.reason == "ValueError: boom"
    assert record.finished is not None and record.finished >= record.created
    store.set_status("r1", "finished")
    assert store.get_run("r1").status == "finished" and store.get_run("r1").reason is None


def test_metrics_round_trip(store):
    store.create_run("r1", "demo", SPEC, [0, 3])
    store.create_run("r2", "demo", SPEC, [0])
    store.write_metrics("r1", 0, [0, 3], {"loss/train": [2.5, 2.25], "accuracy/train": [0.125, 0.5]})
    store.write_metrics("r1", 10, [0, 3], {"loss/train": [1.5, float("nan")], "accuracy/train": [0.75, 1.0]})
    store.write_metrics("r2", 0, [0], {"loss/train": [9.0]})

    frame = store.metrics("r1")
    assert list(frame.columns) == ["run_id", "seed", "step", "name", "value"]
    assert len(frame) == 8 and set(frame["run_id"]) == {"r1"}
    got = {(r.seed, r.step, r.name): r.value for r in frame.itertuples()}
    assert got[(3, 0, "loss/train")] == 2.25
    assert got[(0, 10, "accuracy/train")] == 0.75
    assert got[(3, 0, "accuracy/train")] == 0.5
    assert math.isnan(got[(3, 10, "loss/train")])  # a diverged seed is kept as NaN, not dropped
    both = store.metrics(["r1", "r2"])
    assert len(both) == 9 and set(both["run_id"]) == {"r1", "r2"}

    # rows come back run by run in the order they were written: step order
    assert frame["step"].tolist() == [0, 0, 0, 0, 10, 10, 10, 10]
    assert frame["name"].tolist()[:4] == ["loss/train", "loss/train", "accuracy/train", "accuracy/train"]
    assert both["run_id"].tolist() == ["r1"] * 8 + ["r2"]


def test_interleaved_runs_keep_their_rows_apart(tmp_path):
    """Two runs written in alternation (as two processes would) each read back
    exactly their own rows, in write order; the metric_rows view agrees."""
    first, second = Store(tmp_path), Store(tmp_path)
    first.create_run("a", "demo", SPEC, [0, 1])
    second.create_run("b", "demo", SPEC, [0])
    for step in range(5):
        first.write_metrics("a", step, [0, 1], {"loss": [step, step + 0.5]})
        second.write_metrics("b", step, [0], {"loss": [10.0 * step]})
    reader = Store(tmp_path)
    a, b = reader.metrics("a"), reader.metrics("b")
    assert a["value"].tolist() == [v for step in range(5) for v in (step, step + 0.5)]
    assert b["value"].tolist() == [10.0 * step for step in range(5)]
    view = sqlite3.connect(tmp_path / "runs.db").execute(
        "SELECT run_id, seed, step, name, value FROM metric_rows ORDER BY run_id, step, seed").fetchall()
    assert view == sorted(
        [tuple(r) for r in a.itertuples(index=False)] + [tuple(r) for r in b.itertuples(index=False)],
        key=lambda r: (r[0], r[2], r[1]))


def test_store_of_another_schema_version_is_refused(tmp_path):
    Store(tmp_path).close()
    conn = sqlite3.connect(tmp_path / "runs.db")
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(LearnscopeError, match="schema version 99"):
        Store(tmp_path)


def test_events_and_children(store):
    store.create_run("p", "grokking", {"phenomenon": "grokking"}, [0, 1], kind="phenomenon")
    store.create_run("p.b", "grokking", SPEC, [0, 1], parent="p", arm="b")
    store.create_run("p.a", "grokking", SPEC, [0, 1], parent="p", arm="a")
    assert sorted(c.arm for c in store.children("p")) == ["a", "b"]
    assert [r.id for r in store.list_runs()] == ["p"]  # arms are not top-level runs
    store.add_event("p", "signature", {"ok": False}, step=5)
    store.add_event("p", "diverged", {"metric": "loss"}, seed=1, step=7)
    assert [e["kind"] for e in store.events("p")] == ["signature", "diverged"]
    assert store.events("p", "diverged")[0]["detail"] == {"metric": "loss"}
    assert store.events("p", "diverged")[0]["seed"] == 1


def test_store_persists_across_connections(tmp_path):
    first = Store(tmp_path / "s")
    first.create_run("r1", "demo", SPEC, [0])
    first.write_metrics("r1", 0, [0], {"x": [1.5]})
    first.close()
    second = Store(tmp_path / "s", create=False)
    assert second.get_run("r1").name == "demo"
    assert second.metrics("r1")["value"].tolist() == [1.5]
    second.close()


def test_duplicate_run_id_is_refused(store):
    store.create_run("r1", "demo", SPEC, [0])
    store.write_metrics("r1", 0, [0], {"x": [1.0]})
    with pytest.raises(LearnscopeError) as info:
        store.create_run("r1", "other", {"other": True}, [5])
    assert "r1" in str(info.value) and "already" in str(info.value)
    # the first run is untouched
    record = store.get_run("r1")
    assert record.name == "demo" and record.seeds == [0]
    assert len(store.metrics("r1")) == 1


def test_unknown_run_id_names_recent_runs(store):
    with pytest.raises(NotFoundError, match="no runs yet"):
        store.get_run("nope")
    for rid in ("alpha-run", "beta-run"):
        store.create_run(rid, "demo", SPEC, [0])
    with pytest.raises(NotFoundError) as info:
        store.get_run("alpha-rnu")
    message = str(info.value)
    assert "alpha-rnu" in message and "alpha-run" in message and "beta-run" in message
    assert "did you mean 'alpha-run'" in message
    assert "\n" not in message
    assert isinstance(info.value, LearnscopeError)


def test_missing_store_without_create(tmp_path):
    with pytest.raises(NotFoundError, match="no store"):
        Store(tmp_path / "absent", create=False)
    assert not (tmp_path / "absent").exists()


def test_store_honours_env_var(tmp_path, monkeypatch):
    monkeypatch.setenv("LEARNSCOPE_STORE", str(tmp_path / "from-env"))
    s = Store()
    try:
        assert s.db_path == tmp_path / "from-env" / "runs.db" and s.db_path.exists()
    finally:
        s.close()
    explicit = Store(tmp_path / "explicit")  # an explicit path wins over the env var
    try:
        assert explicit.db_path == tmp_path / "explicit" / "runs.db"
    finally:
        explicit.close()


# ---------------------------------------------------------------- stats


def reference_percentile_ci(x: np.ndarray, resamples: int = 20000, confidence: float = 0.95, seed: int = 1):
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(resamples, len(x)))].mean(axis=1)
    tail = (1 - confidence) / 2 * 100
    return np.percentile(means, tail), np.percentile(means, 100 - tail)


@pytest.mark.parametrize("n, dist", [(8, "normal"), (16, "normal"), (12, "uniform"), (30, "lognormal")])
def test_summarize_against_numpy(n, dist):
    rng = np.random.default_rng(n)
    x = {"normal": lambda: rng.normal(0.7, 0.1, n), "uniform": lambda: rng.uniform(0, 1, n),
         "lognormal": lambda: rng.lognormal(0, 0.5, n)}[dist]()
    s = summarize(x.tolist())
    assert s.n == n
    assert s.mean == pytest.approx(np.mean(x), rel=1e-12)
    assert s.std == pytest.approx(np.std(x, ddof=1), rel=1e-12)
    assert s.ci_low < s.mean < s.ci_high
    low, high = reference_percentile_ci(x)
    width = high - low
    # BCa vs percentile and resampling noise: loose, but a wrong confidence
    # level, a std-based interval or a CI of something else would fail
    assert s.ci_low == pytest.approx(low, abs=0.15 * width)
    assert s.ci_high == pytest.approx(high, abs=0.15 * width)
    assert (s.ci_high - s.ci_low) == pytest.approx(width, rel=0.1)  # a 90% CI would be ~16% narrower


def test_ci_is_deterministic():
    x = np.random.default_rng(3).normal(size=10)
    assert bootstrap_ci(x) == bootstrap_ci(x.copy())
    assert summarize(x) == summarize(list(x))


def test_non_finite_values_are_excluded():
    x = [0.5, 0.7, float("nan"), 0.6, float("inf"), 0.9, float("-inf")]
    finite = np.array([0.5, 0.7, 0.6, 0.9])
    s = summarize(x)
    assert s.n == 4
    assert s.mean == pytest.approx(finite.mean()) and s.std == pytest.approx(finite.std(ddof=1))
    clean = summarize(finite.tolist())
    assert (s.ci_low, s.ci_high) == (clean.ci_low, clean.ci_high)
    assert math.isfinite(s.ci_low) and math.isfinite(s.ci_high)


def test_one_value_gives_nan_ci_and_std():
    s = summarize([0.42])
    assert s.n == 1 and s.mean == 0.42
    assert math.isnan(s.std) and math.isnan(s.ci_low) and math.isnan(s.ci_high)
    s = summarize([0.42, float("nan")])
    assert s.n == 1 and math.isnan(s.ci_low) and math.isnan(s.ci_high)


def test_no_finite_values():
    s = summarize([float("nan"), float("inf")])
    assert s.n == 0 and all(math.isnan(v) for v in (s.mean, s.std, s.ci_low, s.ci_high))


def test_identical_values_give_a_point_interval():
    s = summarize([0.25] * 6)
    assert (s.mean, s.std, s.ci_low, s.ci_high) == (0.25, 0.0, 0.25, 0.25)


def test_as_dict_fields():
    assert list(summarize([1.0, 2.0, 4.0]).as_dict()) == ["n", "mean", "std", "ci_low", "ci_high"]
