"""Active forgetting (embedding resets every K updates): the embedding is a
fresh per-seed draw right after a reset and its optimizer state is zero,
temporary forgetting stops the resets, ensembles equal single runs, resume
is exact, and a bad parameter name is one error line."""

from __future__ import annotations

import copy

import pytest
import torch

from learnscope.errors import SpecError
from learnscope.interventions.forgetting import ActiveForgetting
from learnscope.models import layers
from learnscope.seeding import generator
from learnscope.spec import Experiment
from learnscope.train.trainer import Trainer

TASK = {"name": "repeated-tokens", "vocab": 12, "length": 4, "train_sequences": 64, "test_sequences": 8}
MODEL = {"name": "transformer", "layers": 2, "d_model": 8, "heads": 2, "d_mlp": 8, "attn_only": True}
RECIPE = {"optimizer": "adamw", "lr": 1e-2, "steps": 14, "batch_size": 16, "probe_every": 7, "probe_log_points": 0}
FORGET = {"name": "active-forgetting", "every": 3, "until": 9}


def trainer(interventions=(FORGET,), seeds=(0, 1, 2), recipe=RECIPE) -> Trainer:
    return Trainer(Experiment.model_validate({
        "task": TASK, "model": MODEL, "recipe": recipe, "seeds": list(seeds),
        "interventions": copy.deepcopy(list(interventions)), "probes": ["loss"]}))


def fresh_embedding(seed: int, update: int, shape: tuple[int, ...]) -> torch.Tensor:
    std = 1 / 8**0.5  # the transformer's embedding init at d_model 8
    return layers.normal_init(std)(shape, generator(seed, "active-forgetting", update, "embed.weight"))


def test_schedule_of_resets():
    spec = ActiveForgetting(every=3, until=9)
    assert [u for u in range(1, 15) if spec.resets_after(u)] == [3, 6, 9]
    assert [u for u in range(1, 10) if ActiveForgetting(every=4).resets_after(u)] == [4, 8]


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_a_reset_draws_the_embedding_afresh_and_zeroes_its_optimizer_state(optimizer):
    recipe = {**RECIPE, "optimizer": optimizer, "momentum": 0.9 if optimizer == "sgd" else 0.0}
    tr = trainer(recipe=recipe)
    embed = tr.model.embed.weight
    others = [p for p in tr.params if p is not embed]
    while tr.step < 3:
        tr.train_step()  # the third update is followed by a reset
    for k, seed in enumerate(tr.seeds):
        torch.testing.assert_close(embed[k], fresh_embedding(seed, 3, tuple(embed.shape[1:])), rtol=0, atol=0)
    state = tr.optimizer.state[embed]
    assert state and all(torch.count_nonzero(v) == 0 for v in state.values())
    assert all(torch.count_nonzero(v) > 0 for p in others for k, v in tr.optimizer.state[p].items() if k != "step")
    tr.train_step()  # trains on from the fresh state: as if a new optimizer met a new parameter
    assert all(torch.count_nonzero(v) > 0 for v in tr.optimizer.state[embed].values())


def test_temporary_forgetting_stops_after_until():
    tr = trainer()
    while tr.step < 9:
        tr.train_step()
    after_last_reset = tr.model.embed.weight.detach().clone()
    tr.train_step()
    tr.train_step()
    tr.train_step()  # update 12: no reset after 9
    changed = tr.model.embed.weight.detach()
    assert not torch.equal(changed, after_last_reset)
    shape = tuple(changed.shape[1:])
    assert not any(torch.equal(changed[k], fresh_embedding(s, 12, shape)) for k, s in enumerate(tr.seeds))


def run(interventions, seeds):
    tr = trainer(interventions, seeds)
    record: dict[int, dict[str, torch.Tensor]] = {}
    tr.run(on_probe=lambda step, metrics: record.update({step: {k: v.clone() for k, v in metrics.items()}}))
    return tr, record


def test_an_ensemble_equals_single_runs():
    ensemble, ens_record = run([FORGET], [0, 1, 2])
    for k, seed in enumerate([0, 1, 2]):
        single, record = run([FORGET], [seed])
        for step, metrics in record.items():
            for name, value in metrics.items():
                torch.testing.assert_close(ens_record[step][name][k], value[0], rtol=1e-5, atol=1e-7)
        for p_ens, p_single in zip(ensemble.params, single.params):
            torch.testing.assert_close(p_ens[k], p_single[0], rtol=1e-5, atol=1e-6)
    plain, _ = run([], [0, 1, 2])
    assert not torch.allclose(plain.model.embed.weight, ensemble.model.embed.weight)


def test_resume_is_exact():
    straight, _ = run([FORGET], [0, 1, 2])
    first = trainer()
    while first.step < 5:  # between resets: the next one (after update 6) comes from the step alone
        first.train_step()
    tensors, meta = first.state()
    resumed = trainer()
    resumed.load_state(tensors, meta)
    resumed.run()
    for a, b in zip(straight.params, resumed.params):
        assert torch.equal(a, b)


def test_rows_resets_only_those_rows_and_their_moments():
    tr = trainer([{**FORGET, "rows": [2, 7]}])
    embed = tr.model.embed.weight
    while tr.step < 2:
        tr.train_step()
    before = embed.detach().clone()
    tr.train_step()  # the third update is followed by a reset of rows 2..6
    state = tr.optimizer.state[embed]
    for k, seed in enumerate(tr.seeds):
        fresh = fresh_embedding(seed, 3, tuple(embed.shape[1:]))
        torch.testing.assert_close(embed[k, 2:7], fresh[2:7], rtol=0, atol=0)
        assert not torch.equal(embed[k, :2], fresh[:2]) and not torch.equal(embed[k, 7:], fresh[7:])
        assert not torch.equal(embed[k, :2], before[k, :2])  # trained by the update, not reset
    for key in ("exp_avg", "exp_avg_sq"):
        assert torch.count_nonzero(state[key][:, 2:7]) == 0
        assert torch.count_nonzero(state[key][:, :2]) > 0 and torch.count_nonzero(state[key][:, 7:]) > 0
    assert int(torch.as_tensor(state["step"]).reshape(-1)[0]) == 3  # the tensor's step count goes on


@pytest.mark.parametrize("rows, match", [([3, 3], "no range"), ([0, 99], "goes past")])
def test_bad_rows_are_one_error_line(rows, match):
    with pytest.raises(SpecError, match=match):
        trainer([{**FORGET, "rows": rows}])


def test_an_unknown_parameter_is_one_error_line():
    with pytest.raises(SpecError, match="interventions\\[0\\].parameters.*unknown parameter 'embedding.weight'"):
        trainer([{**FORGET, "parameters": ["embedding.weight"]}])
