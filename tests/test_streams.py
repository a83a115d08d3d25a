"""Streams of experiences, checked against their definitions: permuted
experiences are the base data under fixed feature permutations, split
experiences hold exactly their classes, schedules cover the updates in
blocks, batches come from the current block's pool, a stream is probed at
every block's end and around switches, and the continual measures match a
direct computation from their definitions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from learnscope.cli import main
from learnscope.continual import Stream, accuracy_matrix, measures
from learnscope.errors import SpecError
from learnscope.probes.base import ProbeContext
from learnscope.results import ArmData
from learnscope.spec import Experiment
from learnscope.store.sqlite import RunRecord
from learnscope.tasks.streams import PermutedStream, SplitStream
from learnscope.train.trainer import Trainer

BASE = {"name": "gaussian-mixture", "classes": 6, "dim": 5, "samples": 120, "test_samples": 60}


def experiment(task: dict, steps: int = 60, seeds=(0, 1), **recipe) -> Experiment:
    return Experiment.model_validate({
        "task": task, "model": {"name": "mlp", "hidden": [16]}, "seeds": list(seeds),
        "recipe": {"optimizer": "sgd", "lr": 0.1, "steps": steps, "batch_size": 10, "probe_every": None,
                   "probe_log_points": 0, **recipe},
        "probes": [{"name": "accuracy", "splits": [f"test/{e}" for e in range(task.get("experiences", 5))]}],
    })


# ---------------------------------------------------------------- data


def test_permuted_experiences_are_the_base_under_fixed_permutations():
    stream = PermutedStream(base=BASE, experiences=3)
    base = stream.base.build(4)
    data = stream.build(4)
    n = len(base.targets)
    orders = {}
    for e in range(3):
        x = data.inputs[e * n : (e + 1) * n]
        assert torch.equal(data.targets[e * n : (e + 1) * n], base.targets)
        orders[e] = recover_order(x, base.inputs)
        assert sorted(orders[e]) == list(range(5))
        assert (orders[e] == list(range(5))) == (e == 0)  # the first experience is the base task itself
        for kind in ("train", "test"):
            assert torch.equal(data.splits[f"{kind}/{e}"], base.splits[kind] + e * n)
    assert torch.equal(data.splits["train"], torch.cat([data.splits[f"train/{e}"] for e in range(3)]))
    assert torch.equal(stream.build(4).inputs, data.inputs)  # the same every time
    # each seed draws its own permutations
    other, other_base = stream.build(5), stream.base.build(5)
    assert any(recover_order(other.inputs[e * n : (e + 1) * n], other_base.inputs) != orders[e] for e in (1, 2))


def recover_order(x: torch.Tensor, base: torch.Tensor) -> list[int]:
    """The base column each column of x is, found by comparison."""
    return [next(c for c in range(base.shape[1]) if torch.equal(x[:, k], base[:, c])) for k in range(x.shape[1])]


@pytest.mark.parametrize("scenario", ["class", "task"])
def test_split_experiences_hold_exactly_their_classes(scenario):
    stream = SplitStream(base=BASE, experiences=3, scenario=scenario)
    base = stream.base.build(2)
    data = stream.build(2)
    groups = [[0, 1], [2, 3], [4, 5]]
    for e, group in enumerate(groups):
        for kind in ("train", "test"):
            got = data.splits[f"{kind}/{e}"]
            labels = data.targets[got]
            assert set(labels.tolist()) == set(group)
            # exactly the base examples of these classes, inputs unchanged
            expected = base.splits[kind][torch.isin(base.targets[base.splits[kind]], torch.tensor(group))]
            assert len(got) == len(expected)
            assert torch.equal(data.inputs[got], base.inputs[expected])
    info = stream.info()
    assert info.experiences == 3 and info.output_dim == 6
    assert info.class_groups == (tuple(tuple(g) for g in groups) if scenario == "task" else None)


def test_task_incremental_outputs_compete_within_the_group_only():
    info = SplitStream(base=BASE, experiences=3, scenario="task").info()
    outputs = torch.tensor([[[0.0, 5.0, 1.0, 9.0, 0.0, 0.0], [3.0, 0.0, 0.0, 0.0, 2.0, 8.0]]])
    targets = torch.tensor([[1, 4]])
    restricted = info.restrict_outputs(outputs, targets)
    # by hand: example 0 is in group {0, 1}, example 1 in group {4, 5}
    assert restricted[0, 0].tolist()[:2] == [0.0, 5.0] and torch.isinf(restricted[0, 0, 2:]).all()
    assert torch.isinf(restricted[0, 1, :4]).all() and restricted[0, 1, 4:].tolist() == [2.0, 8.0]


def test_stream_bases_must_be_vector_classification():
    with pytest.raises(SpecError, match="task.base: must be a classification task with vector inputs"):
        experiment({"name": "permuted-stream", "base": {"name": "modular-arithmetic", "p": 7}})
    with pytest.raises(SpecError, match="task.base.name: unknown task 'gaussian-mixtur'"):
        experiment({"name": "permuted-stream", "base": {"name": "gaussian-mixtur"}})
    with pytest.raises(SpecError, match="task.experiences: 7 exceeds the base task's 6 classes"):
        experiment({"name": "split-stream", "base": BASE, "experiences": 7})


# ---------------------------------------------------------------- schedules and batches


def test_sequential_blocks_cover_the_updates():
    blocks = PermutedStream(base=BASE, experiences=3).blocks(100)
    assert [(b.start, b.stop, b.experience) for b in blocks] == [(0, 33, 0), (33, 66, 1), (66, 100, 2)]
    with pytest.raises(SpecError, match="recipe.steps: 2 updates cannot cover the stream's 3 blocks"):
        PermutedStream(base=BASE, experiences=3).blocks(2)


def test_power_law_schedule_introduces_experiences_in_order_and_revisits_recent_ones_most():
    stream = PermutedStream(base=BASE, experiences=40, schedule="power-law", revisits=3, exponent=1.5)
    order = stream.block_order()
    assert len(order) == 40 * 4
    assert [e for i, e in enumerate(order) if e not in order[:i]] == list(range(40))  # new ones in order
    ages, last = [], {}
    for i, e in enumerate(order):
        if i % 4:  # a revisit: of an experience met before, and how long ago
            assert e in last
            ages.append(i - last[e])
        last[e] = i
    # P(age) ∝ age^-1.5 among the ages available: age 1 (the block just before) most often by far
    counts = np.bincount(ages)
    assert counts[1] > counts[2] > counts[4] and counts[1] > len(ages) / 3
    assert order == stream.block_order()  # one environment, drawn from order_seed
    assert order != PermutedStream(base=BASE, experiences=40, schedule="power-law", revisits=3,
                                   exponent=1.5, order_seed=1).block_order()


@pytest.mark.parametrize("pool", ["current", "seen", "all"])
def test_batches_come_from_the_pool(pool):
    trainer = Trainer(experiment({"name": "split-stream", "base": BASE, "experiences": 3}, steps=60))
    trainer.sampler.pool_mode = pool
    ranges = trainer.data.experience_ranges()
    for block in trainer.blocks:
        allowed = {"current": range(*ranges[block.experience]), "seen": range(0, ranges[block.experience][1]),
                   "all": range(0, ranges[-1][1])}[pool]
        for step in range(block.start, block.stop):
            idx = trainer.sampler.indices(step)
            assert set(idx.flatten().tolist()) <= set(allowed)
    # within a block, an epoch of the pool is a permutation: every example once
    block = trainer.blocks[1]
    per_epoch = (ranges[1][1] - ranges[1][0]) // 10
    if pool == "current":
        seen = torch.cat([trainer.sampler.indices(block.start + i)[0] for i in range(per_epoch)])
        assert len(set(seen.tolist())) == len(seen) == per_epoch * 10


def test_streams_are_probed_at_block_ends_and_after_switches():
    trainer = Trainer(experiment({"name": "permuted-stream", "base": BASE, "experiences": 3}, steps=90,
                                 probe_after_switch=4))
    probed = []
    trainer.run(on_probe=lambda step, metrics: probed.append(step))
    assert probed == [0, 30, 31, 32, 33, 34, 60, 61, 62, 63, 64, 90]
    assert trainer.probe_count() == len(probed)


def test_a_stream_test_split_is_measured_from_its_experiences_outputs():
    """`test` and every `test/e` probed whole: `test`'s outputs are the
    experiences' side by side (no second forward), and its accuracy and loss
    are those of a direct forward pass over `test`, by example count."""
    exp = experiment({"name": "permuted-stream", "base": BASE, "experiences": 3}, steps=20)
    splits = ["test", "test/0", "test/1", "test/2"]
    exp = exp.model_copy(update={"probes": Experiment.model_validate({
        **exp.to_dict(), "probes": [{"name": "accuracy", "splits": splits}, {"name": "loss", "splits": splits}],
    }).probes})
    trainer = Trainer(exp)
    trainer.run()
    metrics = trainer.measure()
    x, y = trainer.data.splits["test"]
    with torch.no_grad():
        trainer.model.eval()
        outputs = trainer.model(x)
        trainer.model.train()
    direct_accuracy = (outputs.argmax(-1) == y).double().mean(1)
    torch.testing.assert_close(metrics["accuracy/test"].double(), direct_accuracy)
    torch.testing.assert_close(metrics["loss/test"], trainer.loss_per_seed(outputs, y), rtol=1e-5, atol=1e-6)
    sizes = [trainer.data.size(f"test/{e}") for e in range(3)]
    by_count = sum(metrics[f"accuracy/test/{e}"].double() * n for e, n in enumerate(sizes)) / sum(sizes)
    torch.testing.assert_close(metrics["accuracy/test"].double(), by_count)
    assert trainer.data.parts("test") == ("test/0", "test/1", "test/2") and trainer.data.parts("test/0") == ()
    ctx = ProbeContext(trainer, trainer.step, trainer.probe_needs)
    torch.testing.assert_close(ctx.outputs("test"), outputs, rtol=1e-5, atol=1e-6)  # example by example


def test_probe_after_switch_needs_a_stream(capsys, tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text("task: {name: gaussian-mixture}\nmodel: {name: mlp}\nrecipe: {probe_after_switch: 5}\n")
    assert main(["run", str(spec), "--store", str(tmp_path / "s")]) == 2
    assert "recipe.probe_after_switch: applies to streams" in capsys.readouterr().err


def test_stream_run_resumes_exactly():
    exp = experiment({"name": "split-stream", "base": BASE, "experiences": 3}, steps=60)
    whole = Trainer(exp)
    whole.run()
    first = Trainer(exp)
    while first.step < 35:  # inside the second block
        first.train_step()
    resumed = Trainer(exp)
    resumed.load_state(*first.state())
    resumed.run()
    for a, b in zip(whole.params, resumed.params):
        assert torch.equal(a, b)


# ---------------------------------------------------------------- continual measures


def synthetic_arm(R: np.ndarray, b: np.ndarray, rows: list[int]) -> ArmData:
    """An arm whose stored accuracies are the given matrix at the given steps."""
    S, E, _ = R.shape
    records = [(0, j, s, b[s, j]) for s in range(S) for j in range(E)]
    records += [(rows[i], j, s, R[s, i, j]) for s in range(S) for i in range(E) for j in range(E)]
    frame = pd.DataFrame([{"run_id": "r", "seed": s, "step": step, "name": f"accuracy/test/{j}", "value": v}
                          for step, j, s, v in records])
    record = RunRecord("r", "x", "experiment", None, None, {}, list(range(S)), "finished", None, 0.0, 1.0, "", "")
    return ArmData(record, frame)


def test_continual_measures_match_their_definitions():
    rng = np.random.default_rng(0)
    S, E = 3, 4
    R, b = rng.uniform(size=(S, E, E)), rng.uniform(size=(S, E))
    stream = Stream(E, PermutedStream(base=BASE, experiences=E).blocks(400))
    got_R, got_b = accuracy_matrix(synthetic_arm(R, b, stream.row_steps()), stream)
    np.testing.assert_array_equal(got_R, R)
    np.testing.assert_array_equal(got_b, b)
    got = measures(R, b)
    for s in range(S):  # the definitions, term by term
        assert got["average_accuracy"][s] == pytest.approx(sum(R[s, E - 1, j] for j in range(E)) / E)
        assert got["backward_transfer"][s] == pytest.approx(
            sum(R[s, E - 1, j] - R[s, j, j] for j in range(E - 1)) / (E - 1))
        assert got["forward_transfer"][s] == pytest.approx(sum(R[s, j - 1, j] - b[s, j] for j in range(1, E)) / (E - 1))
        assert got["forgetting"][s] == pytest.approx(
            sum(max(R[s, i, j] - R[s, E - 1, j] for i in range(j, E - 1)) for j in range(E - 1)) / (E - 1))


def test_power_law_rows_are_read_before_the_next_new_experience():
    stream = Stream(3, PermutedStream(base=BASE, experiences=3, schedule="power-law", revisits=2).blocks(90))
    starts = {b.experience: b.start for b in reversed(stream.blocks)}  # first block of each experience
    assert stream.row_steps() == [starts[1], starts[2], 90]
