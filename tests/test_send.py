"""Sensitive-neuron dropout (interventions/send.py): the sensitivity and the
dropped units against a hand computation in numpy from the parameters, an
update against a hand computation with the mask, probes without the drop,
an ensemble against its single runs, exact resume (in memory, and from a
killed run's checkpoint file) and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from helpers import assert_resumes_exactly, cli
from learnscope.errors import SpecError
from learnscope.interventions.send import most_sensitive, sensitivity
from learnscope.models.base import Sites
from learnscope.spec import Experiment
from learnscope.train.trainer import Trainer

TASK = {"name": "gaussian-mixture", "classes": 3, "dim": 6, "samples": 64, "test_samples": 16}
SITE, UNITS = "hidden.0", 12


def send(**fields) -> dict:
    return {"name": "sensitive-neuron-dropout", "site": SITE, "examples": 20, "every": 2, "window": 3,
            "share": 0.25, **fields}


def experiment(interventions=(), seeds=(0, 1), steps: int = 12) -> Experiment:
    return Experiment.model_validate({
        "task": TASK, "model": {"name": "mlp", "hidden": [UNITS]}, "seeds": list(seeds),
        "probes": [{"name": "loss", "splits": ["train", "test"]}, {"name": "accuracy", "splits": ["test"]}],
        "interventions": list(interventions),
        "recipe": {"optimizer": "sgd", "lr": 0.5, "steps": steps, "probe_every": steps, "probe_log_points": 0,
                   "batch_size": 16}})


def numpy_sensitivity(snapshots: list[np.ndarray], score: str) -> np.ndarray:
    """The source's per-input statistics across checkpoints (axis 0), averaged over the inputs: [D]."""
    h = np.stack(snapshots)  # [W, N, D], oldest first
    variance = np.var(h, axis=0)
    if score == "variance":
        return variance.mean(0)
    return (np.sum(np.abs(np.diff(h, axis=0)), axis=0) * variance).mean(0)


def hidden_units(trainer: Trainer, member: int, split: str, n: int) -> np.ndarray:
    """The MLP's first hidden layer, ReLU(x W + b), of one seed on a split's first n examples, in numpy."""
    named = {name: p.detach()[member].double().numpy() for name, p in trainer.model.named_parameters()}
    x = trainer.data.splits[split][0][member, :n].double().numpy()
    return np.maximum(x @ named["hidden.0.weight"] + named["hidden.0.bias"], 0)


def test_the_sensitivity_is_the_sources_across_snapshots_averaged_over_examples():
    generator = torch.Generator().manual_seed(0)
    snapshots = torch.randn(2, 4, 5, 7, generator=generator, dtype=torch.float64)
    for score in ("change-variance", "variance"):
        got = sensitivity(snapshots, score)
        for member in range(2):
            want = numpy_sensitivity(list(snapshots[member].numpy()), score)
            np.testing.assert_allclose(got[member].numpy(), want, rtol=1e-12)


def test_the_most_sensitive_units_are_the_top_share_with_ties_to_the_lower_index():
    scores = torch.tensor([[0.5, 2.0, 2.0, 0.1, 2.0], [3.0, 1.0, 0.0, 1.0, 1.0]])
    assert most_sensitive(scores, 2).tolist() == [[False, True, True, False, False],
                                                  [True, True, False, False, False]]


@pytest.mark.parametrize("score, split", [("change-variance", "train"), ("variance", "test")])
def test_the_dropped_units_are_the_hand_computed_most_sensitive_ones(score, split):
    trainer = Trainer(experiment([send(score=score, split=split)], steps=14))
    state = trainer.interventions[0]
    n, dropped = 16 if split == "test" else 20, 3  # the test split has 16 examples: all of them; 25% of 12 units
    history: list[list[np.ndarray]] = [[], []]
    masks_seen = 0
    while trainer.step < 14:
        trainer.train_step()
        if trainer.step % 2:  # snapshots follow updates 2, 4, ... (counted from 1)
            continue
        for member in range(2):
            history[member].append(hidden_units(trainer, member, split, n))
        if len(history[0]) < 3:
            assert not state.ready and not bool(state.dropped.any())
            continue
        masks_seen += 1
        for member in range(2):
            scores = numpy_sensitivity(history[member][-3:], score)
            chosen = np.argsort(-scores, kind="stable")[:dropped]
            assert sorted(np.flatnonzero(state.dropped[member].numpy())) == sorted(chosen.tolist())
    assert masks_seen == 5


def test_an_update_zeroes_the_dropped_units_of_every_example_without_rescaling():
    trainer = Trainer(experiment([send()]))
    for _ in range(6):  # the third snapshot follows update 6: update 6 (index) is the first with a mask
        trainer.train_step()
    state = trainer.interventions[0]
    assert state.ready
    keep = (~state.dropped).double()
    plain = Trainer(experiment())
    plain.load_state(*trainer.state())
    x, y = plain.batch()
    names = [n for n, _ in plain.model.named_parameters()]
    expected = []
    for member in range(2):
        params = [q[member : member + 1].detach().clone().requires_grad_(True) for q in plain.params]
        sites = Sites(edits={SITE: lambda h, m=keep[member].float(): h * m})
        out = torch.func.functional_call(plain.model, dict(zip(names, params)), (x[member : member + 1], sites))
        grads = torch.autograd.grad(torch.nn.functional.cross_entropy(out[0], y[member]), params)
        expected.append([q[member] - 0.5 * g[0] for q, g in zip(plain.params, grads)])
    trainer.train_step()
    for member in range(2):
        for got, want in zip(trainer.params, expected[member]):
            torch.testing.assert_close(got[member], want)
    # the dropped units' incoming weights took no gradient
    weight = trainer.params[0]  # hidden.0.weight [S, in, units]
    before = plain.params[0]
    for member in range(2):
        gone = state.dropped[member]
        torch.testing.assert_close(weight[member][:, gone], before[member][:, gone], rtol=0, atol=0)
        assert not torch.equal(weight[member][:, ~gone], before[member][:, ~gone])


def test_probes_measure_the_model_with_every_unit():
    trainer = Trainer(experiment([send()]))
    for _ in range(8):
        trainer.train_step()
    assert trainer.interventions[0].ready
    trainer.model.train()
    assert trainer.site_edits(slice(0, 2), slice(0, 16))  # training passes are edited
    plain = Trainer(experiment())
    plain.load_state(*trainer.state())
    for name, metric in trainer.measure().items():
        torch.testing.assert_close(metric, plain.measure()[name], rtol=0, atol=0)


def test_nothing_is_dropped_before_start():
    late = Trainer(experiment([send(start=9)]))
    plain = Trainer(experiment())
    for _ in range(9):
        late.train_step(), plain.train_step()
    assert late.interventions[0].ready  # a mask is held, but not yet applied
    for p, q in zip(late.params, plain.params):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    late.train_step(), plain.train_step()
    assert not torch.equal(late.params[0], plain.params[0])


def test_every_position_of_a_sequence_drops_the_same_units():
    spec = Experiment.model_validate({
        "task": {"name": "markov-text", "vocab": 16, "length": 6, "train_sequences": 32, "test_sequences": 8},
        "model": {"name": "transformer", "layers": 1, "d_model": 8, "heads": 2, "d_mlp": 10}, "seeds": [0, 1],
        "interventions": [send(site="mlp.0", share=0.3, every=1)],
        "recipe": {"optimizer": "adamw", "lr": 1e-2, "steps": 5, "batch_size": 8, "probe_every": 5,
                   "probe_log_points": 0}})
    trainer = Trainer(spec)
    for _ in range(3):
        trainer.train_step()
    state = trainer.interventions[0]
    assert state.snapshots.shape == (2, 3, 20 * 6, 10)  # every position an example of its own
    assert state.dropped.sum(1).tolist() == [3, 3]
    trainer.model.train()
    edit = trainer.site_edits(slice(0, 2), slice(0, 4))["mlp.0"]
    out = edit(torch.ones(2, 4, 6, 10))
    for member in range(2):
        assert torch.equal(out[member] == 0, state.dropped[member].expand(4, 6, 10))


def test_seed_k_of_an_ensemble_drops_as_its_single_run():
    together = Trainer(experiment([send()], seeds=(0, 1, 2)))
    alone = Trainer(experiment([send()], seeds=(1,)))
    together.run(), alone.run()
    assert torch.equal(together.interventions[0].dropped[1:2], alone.interventions[0].dropped)
    for p, q in zip(together.params, alone.params):
        torch.testing.assert_close(p[1:2], q)


@pytest.mark.parametrize("first_steps", [3, 7])  # mid-window, and with a mask held
def test_a_resumed_run_continues_exactly(first_steps):
    spec = experiment([send()], steps=14)
    assert_resumes_exactly(lambda: Trainer(spec), first_steps=first_steps)


@pytest.mark.parametrize("fields, message", [
    ({"site": "hidden.7"}, r"interventions\[0\]\.site: unknown site 'hidden.7'; .*hidden\.0"),
    ({"split": "tset"}, r"interventions\[0\]\.split: unknown split 'tset'; valid: test, train "
                        r"\(did you mean 'test'\?\)"),
    ({"share": 0.05}, r"interventions\[0\]\.share: 0.05 of the 12 units of site 'hidden.0' is none; "
                      r"give at least 1/12 = 0.08333"),
    ({"every": 5}, r"interventions\[0\]: after 3 snapshots every 5 updates the first mask is for update 15, "
                   r"past the run's last update, 11"),
    ({"start": 12}, r"interventions\[0\]: start 12 is past the run's last update, 11"),
    ({"share": 1.0}, r"interventions\[0\]\.share: Input should be less than 1 \(got 1.0\)"),
    ({"window": 1}, r"interventions\[0\]\.window: Input should be greater than or equal to 2 \(got 1\)"),
    ({"score": "net-change"}, r"interventions\[0\]\.score: Input should be 'change-variance' or 'variance'"),
])
def test_bad_specs_are_one_line(fields, message):
    with pytest.raises(SpecError, match=message) as raised:
        Trainer(experiment([send(**fields)]))
    assert "\n" not in str(raised.value)


def test_a_bad_spec_is_one_line_at_the_command_line(tmp_path, capsys):
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(experiment([send(site="hiden.0")]).to_dict()))
    code, _, err = cli(capsys, "run", path, "--store", tmp_path / "store")
    assert code == 2 and "interventions[0].site: unknown site 'hiden.0'" in err
    assert len(err.strip().splitlines()) == 1


def test_a_killed_run_resumes_from_its_checkpoint_file_bit_for_bit(tmp_path, capsys):
    import signal
    import sqlite3

    from helpers import learnscope

    spec = experiment([send()], steps=20).to_dict()
    spec["recipe"].update(probe_every=2, checkpoint_every=8)  # the checkpoint at 8 holds a mask and 3 snapshots
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))

    def rows(store, run_id):
        conn = sqlite3.connect(store / "runs.db")
        try:
            return sorted(conn.execute("SELECT seed, step, name, value FROM metric_rows WHERE run_id = ?", (run_id,)))
        finally:
            conn.close()

    whole = learnscope("run", path, "--store", tmp_path / "whole", "--run-id", "w", "--no-report")
    assert whole.returncode == 0, whole.stderr
    killed = learnscope("run", path, "--store", tmp_path / "killed", "--run-id", "k", "--no-report", fault="step:13")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    code, _, err = cli(capsys, "resume", "k", "--store", tmp_path / "killed", "--no-report")
    assert code == 0, err
    assert rows(tmp_path / "killed", "k") == rows(tmp_path / "whole", "w")
