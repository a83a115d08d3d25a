"""The run store (SQLite in WAL mode); the seed statistics are in
tests/test_stats.py."""

from __future__ import annotations

import math
import sqlite3

import pytest

from learnscope.errors import LearnscopeError, NotFoundError
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
