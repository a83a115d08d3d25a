"""The pieces of `few-shot-retention`: the `few-shot-items` task, the
`single-exposure` intervention (the batch at its update is exactly the
items, every other update's is the drawn one, and a resumed run trains the
same; its few exposures, `times` and `per_update`, against a plan written
out by loops and against successive SGD steps by autograd), the
`recognition` probe against an independent numpy computation of Orhan's
two-alternative forced choice, and the phenomenon's check (recognition and
recall) on hand-made curves."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from learnscope.catalog import few_shot_retention as fsr
from learnscope.errors import SpecError
from learnscope.losses import IGNORE
from learnscope.probes.recognition import forced_choice
from learnscope.results import ArmData
from learnscope.spec import Experiment
from learnscope.store.base import RunRecord
from learnscope.tasks.few_shot_items import FewShotItems
from learnscope.tasks.markov_text import MarkovText
from learnscope.train.trainer import Trainer

TASK = {"name": "few-shot-items", "vocab": 12, "length": 6, "branching": 2, "train_sequences": 40,
        "test_sequences": 8, "items": 5, "cue": 2}
MODEL = {"name": "transformer", "layers": 1, "d_model": 16, "heads": 2, "d_mlp": 32}


def experiment(steps: int = 5, exposure: dict | None = None, probes=None, optimizer: str = "sgd",
               seeds=(0, 1, 2)) -> Experiment:
    return Experiment.model_validate({
        "task": TASK, "model": MODEL, "seeds": list(seeds),
        "recipe": {"optimizer": optimizer, "lr": 0.1, "batch_size": 4, "steps": steps, "probe_every": 1,
                   "probe_log_points": 0, "checkpoint_every": None},
        "interventions": [] if exposure is None else [{"name": "single-exposure", **exposure}],
        "probes": probes or [{"name": "loss", "splits": ["items"]}]})


# ---------------------------------------------------------------- the task

def test_task_splits_background_items_and_controls():
    task = FewShotItems.model_validate({k: v for k, v in TASK.items() if k != "name"})
    data = task.build(3)
    background = MarkovText(vocab=12, length=6, branching=2, train_sequences=40, test_sequences=8).build(3)
    # the background is markov-text's, sequence for sequence
    for split in ("train", "test"):
        assert torch.equal(data.inputs[data.splits[split]], background.inputs[background.splits[split]])
        assert torch.equal(data.targets[data.splits[split]], background.targets[background.splits[split]])
    items, controls = data.splits["items"], data.splits["controls"]
    assert len(items) == len(controls) == 5
    for split in ("items", "controls"):
        x, y = data.inputs[data.splits[split]], data.targets[data.splits[split]]
        assert (x[:, 0] == 12).all()  # <bos>
        assert torch.equal(x[:, 1:], y[:, :-1])  # next-token targets, every position scored
        assert (y != IGNORE).all() and (y < 12).all()
        # the recall split: the same strings, the cue's tokens (targets 0..cue-1) not scored
        rx, ry = data.inputs[data.splits[f"{split}_recall"]], data.targets[data.splits[f"{split}_recall"]]
        assert torch.equal(rx, x)
        assert (ry[:, :2] == IGNORE).all() and torch.equal(ry[:, 2:], y[:, 2:])
    assert not torch.equal(data.inputs[items], data.inputs[controls])
    assert len(set(torch.cat(list(data.splits.values())).tolist())) == len(data.targets)  # no row shared
    again = task.build(3)
    assert torch.equal(again.inputs, data.inputs) and torch.equal(again.targets, data.targets)
    assert not torch.equal(task.build(4).inputs[items], data.inputs[items])  # per seed


@pytest.mark.parametrize("change, word", [({"cue": 6}, "cue"), ({"branching": 13}, "branching"),
                                          ({"items": 0}, "items")])
def test_task_refuses_bad_sizes(change, word):
    with pytest.raises(Exception, match=word):
        Experiment.model_validate({"task": {**TASK, **change}, "model": MODEL})


# ---------------------------------------------------------------- the intervention

def test_the_batch_at_the_exposure_is_exactly_the_items_and_no_other_is_changed():
    for mix in ("replace", "append"):
        t = Trainer(experiment(exposure={"at": 2, "mix": mix}))
        state = t.interventions[0]
        items_x, items_y = t.data.splits["items"]
        for step in range(5):
            t.step = step
            x, y = t.batch()
            got_x, got_y = state.batch(t, x, y)
            if step != 2:
                assert got_x is x and got_y is y
                continue
            want_x = items_x if mix == "replace" else torch.cat([x, items_x], 1)
            want_y = items_y if mix == "replace" else torch.cat([y, items_y], 1)
            assert torch.equal(got_x, want_x) and torch.equal(got_y, want_y)
            assert got_x.shape[:2] == (3, 5 if mix == "replace" else 9)  # every seed its own items
        assert state.extra_examples == 5


def test_the_exposure_update_is_one_sgd_step_on_the_items():
    """Update 1 of plain SGD with the exposure there moves each seed's weights by
    -lr times the gradient of that seed's mean loss over its own items, computed
    here by autograd on one seed's model at a time."""
    t = Trainer(experiment(steps=3, exposure={"at": 1}))
    t.train_step()
    before = [p.detach().clone() for p in t.params]
    items_x, items_y = t.data.splits["items"]
    names = [n for n, p in t.model.named_parameters() if p.requires_grad]
    want = []
    for k in range(3):
        single = {n: p[k : k + 1].detach().clone().requires_grad_() for n, p in zip(names, before)}
        out = torch.func.functional_call(t.model, single, (items_x[k : k + 1],))
        loss = torch.nn.functional.cross_entropy(out.reshape(-1, out.shape[-1]), items_y[k].reshape(-1))
        grads = torch.autograd.grad(loss, list(single.values()))
        want.append([p - 0.1 * g for p, g in zip(single.values(), grads)])
    t.train_step()
    for i, p in enumerate(t.params):
        expected = torch.cat([want[k][i] for k in range(3)]).detach()
        torch.testing.assert_close(p.detach(), expected, rtol=1e-5, atol=1e-6)


def test_items_seen_once_lose_loss_and_controls_do_not_gain_it():
    t = Trainer(experiment(steps=2, exposure={"at": 0}, probes=[{"name": "loss", "splits": ["items", "controls"]}]))
    before = t.measure()
    t.train_step()
    after = t.measure()
    drop_items = before["loss/items"] - after["loss/items"]
    drop_controls = before["loss/controls"] - after["loss/controls"]
    assert (drop_items > drop_controls + 0.05).all()


@pytest.mark.parametrize("stop", [1, 3])  # a resume before the exposure, and one after
def test_a_resumed_run_trains_as_the_uninterrupted_one(stop):
    straight = Trainer(experiment(steps=5, exposure={"at": 2}, optimizer="adamw"))
    straight.run()
    first = Trainer(experiment(steps=5, exposure={"at": 2}, optimizer="adamw"))
    while first.step < stop:
        first.train_step()
    tensors, meta = first.state()
    resumed = Trainer(experiment(steps=5, exposure={"at": 2}, optimizer="adamw"))
    resumed.load_state(tensors, meta)
    resumed.run()
    for a, b in zip(straight.params, resumed.params):
        assert torch.equal(a, b)
    never = Trainer(experiment(steps=5, optimizer="adamw"))
    never.run()
    assert not torch.equal(never.params[0], straight.params[0])  # the exposure changed training


@pytest.mark.parametrize("exposure, field, words", [
    ({"split": "itemz"}, "interventions[0].split", "valid: controls"),
    ({"split": "train"}, "interventions[0].split", "every update draws from"),
    ({"at": 5}, "interventions[0].at", "past the run's last, 4"),
])
def test_the_intervention_refuses_bad_input(exposure, field, words):
    with pytest.raises(SpecError, match=words) as error:
        Trainer(experiment(exposure=exposure))
    assert field in str(error.value)


def expected_exposures(at: int, times: int, size: int, per_update: int | None) -> dict[int, list[int]]:
    """{update: the split's example indices in its batch}, written out by loops."""
    per = size if per_update is None else per_update
    chunks = []
    start = 0
    while start < size:
        chunks.append(list(range(start, min(start + per, size))))
        start += per
    plan, step = {}, at
    for _ in range(times):
        for chunk in chunks:
            plan[step] = chunk
            step += 1
    return plan


@pytest.mark.parametrize("times, per_update", [(1, None), (3, None), (2, 2), (1, 3), (2, 5), (2, 9)])
def test_few_exposures_hold_the_items_at_consecutive_updates(times, per_update):
    """`times` showings from `at`, each over consecutive updates of `per_update`
    items in order, against the plan written out by loops; other updates as drawn."""
    exposure = {"at": 1, "times": times, **({} if per_update is None else {"per_update": per_update})}
    t = Trainer(experiment(steps=12, exposure=exposure))
    state = t.interventions[0]
    items_x, items_y = t.data.splits["items"]
    plan = expected_exposures(1, times, 5, per_update)
    assert state.extra_examples == max(len(chunk) for chunk in plan.values())
    for step in range(12):
        t.step = step
        x, y = t.batch()
        got_x, got_y = state.batch(t, x, y)
        if step not in plan:
            assert got_x is x and got_y is y
            continue
        index = torch.tensor(plan[step])
        assert torch.equal(got_x, items_x[:, index]) and torch.equal(got_y, items_y[:, index])


def test_few_exposures_append_to_the_drawn_batch():
    t = Trainer(experiment(steps=6, exposure={"at": 0, "times": 2, "per_update": 3, "mix": "append"}))
    state = t.interventions[0]
    items_x, _ = t.data.splits["items"]
    for step, index in expected_exposures(0, 2, 5, 3).items():
        t.step = step
        x, y = t.batch()
        got_x, _ = state.batch(t, x, y)
        assert torch.equal(got_x, torch.cat([x, items_x[:, torch.tensor(index)]], 1))


def test_k_exposures_are_k_sgd_steps_on_the_items():
    """Three exposures from update 0 of plain SGD: each seed's weights after them
    are three successive steps of -lr times the gradient of its mean loss over its
    own items, by autograd on one seed's model at a time."""
    t = Trainer(experiment(steps=4, exposure={"at": 0, "times": 3}))
    items_x, items_y = t.data.splits["items"]
    names = [n for n, p in t.model.named_parameters() if p.requires_grad]
    want = []
    for k in range(3):
        weights = [p[k : k + 1].detach().clone() for p in t.params]
        for _ in range(3):
            single = {n: w.clone().requires_grad_() for n, w in zip(names, weights)}
            out = torch.func.functional_call(t.model, single, (items_x[k : k + 1],))
            loss = torch.nn.functional.cross_entropy(out.reshape(-1, out.shape[-1]), items_y[k].reshape(-1))
            grads = torch.autograd.grad(loss, list(single.values()))
            weights = [(w - 0.1 * g).detach() for w, g in zip(single.values(), grads)]
        want.append(weights)
    for _ in range(3):
        t.train_step()
    for i, p in enumerate(t.params):
        torch.testing.assert_close(p.detach(), torch.cat([want[k][i] for k in range(3)]), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("stop", [1, 2, 4])  # resumes between exposures, and after them
def test_a_run_resumed_during_the_exposures_trains_as_the_uninterrupted_one(stop):
    exposure = {"at": 1, "times": 2, "per_update": 3}
    straight = Trainer(experiment(steps=6, exposure=exposure, optimizer="adamw"))
    straight.run()
    first = Trainer(experiment(steps=6, exposure=exposure, optimizer="adamw"))
    while first.step < stop:
        first.train_step()
    tensors, meta = first.state()
    resumed = Trainer(experiment(steps=6, exposure=exposure, optimizer="adamw"))
    resumed.load_state(tensors, meta)
    resumed.run()
    for a, b in zip(straight.params, resumed.params):
        assert torch.equal(a, b)


def test_exposures_past_the_run_are_refused():
    with pytest.raises(SpecError, match="updates 2..5, past the run's last, 4") as error:
        Trainer(experiment(exposure={"at": 2, "times": 2, "per_update": 3}))
    assert "interventions[0].times" in str(error.value)
    for bad in ({"times": 0}, {"per_update": 0}):
        with pytest.raises(Exception, match=next(iter(bad))):
            experiment(exposure=bad)


def test_a_wrong_mix_names_the_valid_ones():
    with pytest.raises(Exception, match="replace") as error:
        experiment(exposure={"mix": "insert"})
    assert "append" in str(error.value)


# ---------------------------------------------------------------- the probe

def numpy_forced_choice(seen: np.ndarray, foil: np.ndarray) -> np.ndarray:
    wins = np.zeros(seen.shape[0])
    for s in range(seen.shape[0]):
        for a, b in zip(seen[s], foil[s]):
            wins[s] += 1.0 if a < b else 0.5 if a == b else 0.0
    return wins / seen.shape[1]


def test_forced_choice_matches_a_loop_with_ties():
    rng = np.random.default_rng(0)
    seen = rng.integers(0, 4, (3, 20)).astype(np.float64)  # small integers: ties occur
    foil = rng.integers(0, 4, (3, 20)).astype(np.float64)
    got = forced_choice(torch.from_numpy(seen), torch.from_numpy(foil)).numpy()
    np.testing.assert_allclose(got, numpy_forced_choice(seen, foil), rtol=0, atol=1e-12)
    assert (seen == foil).any()
    assert forced_choice(torch.tensor([[1.0, 2.0]]), torch.tensor([[3.0, 2.0]])).tolist() == [0.75]
    with pytest.raises(Exception, match="foil_nll"):
        forced_choice(torch.zeros(2, 3), torch.zeros(2, 4))


def numpy_total_nll(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """[S, n]: per string, the sum over its scored positions of -log softmax(logits)[target]."""
    shifted = logits - logits.max(-1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    scored = targets != IGNORE
    picked = np.take_along_axis(logp, np.where(scored, targets, 0)[..., None], -1)[..., 0]
    return -(picked * scored).sum(-1)


def test_the_probe_matches_numpy_on_the_models_outputs():
    t = Trainer(experiment(exposure={"at": 0}, probes=["recognition"]))
    t.run(on_probe=None)
    measured = t.measure()
    assert list(measured) == ["recognition/items"]
    with torch.no_grad():
        nll = {split: numpy_total_nll(t.model(t.data.splits[split][0]).double().numpy(),
                                      t.data.splits[split][1].numpy()) for split in ("items", "controls")}
    want = numpy_forced_choice(nll["items"], nll["controls"])
    np.testing.assert_allclose(measured["recognition/items"].double().numpy(), want, atol=1e-6)


def test_the_probe_refuses_unknown_splits():
    with pytest.raises(SpecError, match="unknown split 'foil'"):
        Trainer(experiment(probes=[{"name": "recognition", "foils": "foil"}]))


# ---------------------------------------------------------------- the signature

def arm(name: str, curves: dict[str, np.ndarray], steps: np.ndarray) -> ArmData:
    seeds = list(range(next(iter(curves.values())).shape[0]))
    rows = [{"run_id": name, "seed": s, "step": int(step), "name": metric, "value": float(values[s, i])}
            for metric, values in curves.items() for s in seeds for i, step in enumerate(steps)]
    record = RunRecord(f"r.{name}", "few-shot-retention", "experiment", "r", name, {}, seeds, "finished", None,
                       0.0, 1.0, "test", "host")
    return ArmData(record, pd.DataFrame(rows))


def test_the_check_reads_fast_then_slow_forgetting():
    steps = np.array([0, 1, 2, 5, 10, fsr.SPLIT, 50, 100])
    # seed 0: a jump then fast, then slow decay; seed 1: no jump; seed 2: a linear decline (no fast phase)
    gap = np.array([[0.0, 1.0, 0.9, 0.8, 0.7, 0.5, 0.45, 0.4],
                    [0.0, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1],
                    [0.0, 1.0, 0.99, 0.96, 0.91, 0.81, 0.51, 0.01]])
    rec = np.array([[0.5, 1.0, 1.0, 1.0, 0.9, 0.9, 0.8, 0.8], [0.5] * 8, [0.5, 1.0, 1.0, 1.0, 1.0, 1.0, 0.8, 0.5]])
    items = 3.0 - gap
    zeros = np.zeros_like(gap)
    exposed = arm(fsr.EXPOSED, {fsr.ITEM_LOSS: items, fsr.CONTROL_LOSS: items + gap, fsr.REC: rec, fsr.RECALL: zeros,
                            fsr.RECALL_CONTROL: zeros, "loss/test": zeros + 1.4}, steps)
    background = arm(fsr.BACKGROUND, {"loss/test": np.ones((3, 1))}, np.array([0]))
    few = few_arm(np.array([FAST_THEN_SLOW] * 3))
    verdict = fsr.FewShotRetention().check({fsr.BACKGROUND: background, fsr.EXPOSED: exposed, fsr.EXPOSED_FEW: few})
    assert verdict.passed == [True, False, False]
    assert "peak recognition 0.500" in verdict.failures[1]
    assert "early rate 0.0100, late rate 0.01000" in verdict.failures[2]
    measures = verdict.measures
    np.testing.assert_allclose(measures["early rate"][0], (1.0 - 0.5) / (fsr.SPLIT - 1))
    np.testing.assert_allclose(measures["late rate"][0], (0.5 - 0.4) / (100 - fsr.SPLIT))
    assert not verdict.ok


FEW_STEPS = np.array([0, 1, 8, 9, 13, 20, fsr.FEW_SPLIT, 80, 120])
FAST_THEN_SLOW = [0.01, 0.03, 0.4, 0.5, 0.4, 0.2, 0.1, 0.08, 0.06]


def check_recall(few: ArmData):
    sig = fsr.FewShotRetention().signature(few.seeds)
    fsr.FewShotRetention.check_recall(few, sig)
    return sig.verdict()


def few_arm(recall: np.ndarray, control: float = 0.01) -> ArmData:
    return arm(fsr.EXPOSED_FEW, {fsr.RECALL: recall, fsr.RECALL_CONTROL: np.full_like(recall, control),
                                 "loss/test": np.full_like(recall, 1.5)}, FEW_STEPS)


def test_the_check_reads_recall_rising_after_the_exposures_then_falling_fast_then_slow():
    # seed 0: a peak, then fast, then slow; seed 1: no recall; seed 2: a linear decline (no fast phase);
    # seed 3: a peak before the last exposure only (outside the window)
    linear = [0.01, 0.03] + [0.5 - 0.004 * (s - fsr.TIMES) for s in FEW_STEPS[2:]]
    early_only = [0.01, 0.6, 0.05, 0.05, 0.04, 0.03, 0.02, 0.02, 0.01]
    recall = np.array([FAST_THEN_SLOW, [0.01] * 9, linear, early_only])
    verdict = check_recall(few_arm(recall))
    assert verdict.passed == [True, False, False, False]
    assert "peak recall 0.010 at update 8" in verdict.failures[1]
    assert "peak recall 0.050 at update 8" in verdict.failures[3]
    measures = verdict.measures
    np.testing.assert_allclose(measures["few: early recall rate"][0], (0.5 - 0.1) / (fsr.FEW_SPLIT - 9))
    np.testing.assert_allclose(measures["few: late recall rate"][0], (0.1 - 0.06) / (120 - fsr.FEW_SPLIT))
    np.testing.assert_allclose(measures["few: early / late recall rate"][2], 1.0, rtol=1e-9)
    assert "early rate 0.0040, late rate 0.00400" in verdict.failures[2]
    # recall as high in the controls: no memory of the items
    same = check_recall(few_arm(np.array([FAST_THEN_SLOW]), control=0.45))
    assert same.passed == [False] and "recall 0.500, controls 0.450" in same.failures[0]


def test_the_arms_have_the_same_names_at_both_sizes_and_the_few_shot_arm_starts_from_the_background():
    for quick in (True, False):
        arms = fsr.FewShotRetention().arms(quick)
        assert [a.name for a in arms] == [fsr.BACKGROUND, fsr.EXPOSED, fsr.EXPOSED_FEW]
        few = arms[2]
        assert few.starts_from == fsr.BACKGROUND
        (exposure,) = few.experiment.interventions
        assert exposure.times == fsr.TIMES and exposure.at == 0 and exposure.per_update is None
        assert few.experiment.task.items == fsr.FEW_ITEMS
        assert fsr.FEW_SPLIT % few.experiment.recipe.probe_every == 0  # probed
