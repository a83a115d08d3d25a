"""The `markov-text` task's repeated subset (`repeated_sequences` n,
`repeats` R), against direct computations: the default data is the plain
corpus drawn by a hand-written loop; with the option, one epoch of the
sampler shows every repeated sequence exactly R times and every other
training sequence once, the repeated share of tokens n*R / train_sequences;
the held-out data is the control's. The `repeated-data` arms share one token
budget, and its signature is checked on made-up losses."""

from __future__ import annotations

from collections import Counter

import pandas as pd
import pytest
import torch
from pydantic import ValidationError

from learnscope.catalog.repeated_data import CONTROL, GROWTH, HARM, PEAK, REPEATS, RepeatedData
from learnscope.results import ArmData
from learnscope.seeding import generator
from learnscope.store.base import RunRecord
from learnscope.tasks.markov_text import MarkovText
from learnscope.train.data import BatchSampler, EnsembleData

SMALL = {"vocab": 20, "length": 6, "branching": 3, "train_sequences": 120, "test_sequences": 16}


def plain_corpus(task: MarkovText, seed: int) -> torch.Tensor:
    """[N, length + 1]: `<bos>`, a uniform first token, then the chain, one position at a time."""
    matrix = task.transitions(seed)
    gen = generator(seed, "data", "sequences")
    n = task.train_sequences + task.test_sequences
    columns = [[task.vocab] * n, torch.randint(task.vocab, (n,), generator=gen).tolist()]
    for _ in range(2, task.length + 1):
        columns.append(torch.multinomial(matrix[columns[-1]], 1, generator=gen)[:, 0].tolist())
    return torch.tensor(columns).T


def test_the_default_is_the_plain_corpus_with_two_splits():
    task = MarkovText(**SMALL)
    data = task.build(3)
    corpus = plain_corpus(task, 3)
    assert torch.equal(data.inputs, corpus[:, :-1]) and torch.equal(data.targets, corpus[:, 1:])
    assert list(data.splits) == ["train", "test"] and task.info().splits == ("train", "test")
    assert data.splits["train"].tolist() == list(range(120))
    assert data.splits["test"].tolist() == list(range(120, 136))


@pytest.mark.parametrize("n,repeats", [(5, 4), (1, 30), (12, 1), (40, 3)])
def test_one_epoch_shows_each_repeated_sequence_r_times_and_the_rest_once(n, repeats):
    task = MarkovText(**SMALL, repeated_sequences=n, repeats=repeats)
    seeds, batch, budget = [0, 7], 8, SMALL["train_sequences"]
    data = EnsembleData(task, seeds)
    assert task.info().splits == ("train", "test", "repeated")
    assert data.size("train") == budget  # the same budget
    sampler = BatchSampler(seeds, budget, batch)
    x, _ = data.splits["train"]
    for k, seed in enumerate(seeds):
        corpus = plain_corpus(MarkovText(**SMALL), seed)[:, :-1]  # the same draws as without the option
        train_index = task.build(seed).splits["train"]
        assert torch.equal(x[k], corpus[train_index])  # the split's sequences are these corpus rows
        seen = Counter()
        for step in range(budget // batch):  # one epoch of updates
            seen.update(train_index[sampler.indices(step)[k]].tolist())
        unique = range(n, budget - n * (repeats - 1))
        assert all(seen[i] == repeats for i in range(n))  # the first n rows, R times each
        assert all(seen[i] == 1 for i in unique)
        assert set(seen) == set(range(n)) | set(unique)  # nothing else: no held-out row
        assert sum(seen.values()) == budget
        share = sum(seen[i] for i in range(n)) * task.length / (sum(seen.values()) * task.length)  # of tokens
        assert share == n * repeats / budget
        assert torch.equal(data.splits["repeated"][0][k], corpus[:n])
        assert torch.equal(data.splits["test"][0][k], corpus[budget:])  # the control's held-out data


def test_r_one_is_the_plain_training_split():
    task = MarkovText(**SMALL, repeated_sequences=12)
    data, plain = task.build(2), MarkovText(**SMALL).build(2)
    assert torch.equal(data.inputs, plain.inputs) and torch.equal(data.splits["train"], plain.splits["train"])
    assert data.splits["repeated"].tolist() == list(range(12))


def test_bad_options_are_refused_naming_what_is_valid():
    with pytest.raises(ValidationError, match=r"repeats \(3\) needs repeated_sequences >= 1"):
        MarkovText(**SMALL, repeats=3)
    with pytest.raises(ValidationError, match=r"repeated_sequences x repeats \(50 x 3\) must be at most "
                       r"train_sequences \(120\)"):
        MarkovText(**SMALL, repeated_sequences=50, repeats=3)
    with pytest.raises(ValidationError, match="greater than or equal to 1"):
        MarkovText(**SMALL, repeated_sequences=2, repeats=0)


@pytest.mark.parametrize("quick", [True, False])
def test_the_arms_share_one_budget_of_one_epoch_and_ten_percent_repeated(quick):
    arms = {arm.name: arm.experiment for arm in RepeatedData().arms(quick)}
    assert list(arms) == [CONTROL, *REPEATS]
    budgets = set()
    for name, exp in arms.items():
        task, recipe = exp.task, exp.recipe
        assert recipe.steps * recipe.batch_size == task.train_sequences  # one epoch
        budgets.add((recipe.steps, recipe.batch_size, task.length, task.train_sequences))
        assert task.repeats == (1 if name == CONTROL else REPEATS[name])
        share = task.repeated_sequences * task.repeats / task.train_sequences
        assert 0.09 <= share <= 0.1001, (name, share)
    assert len(budgets) == 1


def made_up(test: dict[str, list[float]]) -> dict[str, ArmData]:
    """Arms whose final test loss per seed is `test[arm]` (other metrics constant)."""
    out = {}
    for arm, values in test.items():
        rows = []
        for seed, value in enumerate(values):
            rows += [("r", seed, 64, "loss/test", value), ("r", seed, 64, "loss/repeated", 1.0),
                     ("r", seed, 64, "induction_score/max", 0.01)]
        record = RunRecord(f"r.{arm}", "repeated-data", "experiment", "r", arm, {}, list(range(len(values))),
                           "finished", None, 0.0, None, "", "")
        out[arm] = ArmData(record, pd.DataFrame(rows, columns=["run_id", "seed", "step", "name", "value"]))
    return out


def test_the_signature_needs_harm_at_many_repeats_growth_from_few_and_a_fall_at_the_most():
    peak = 2.0 + 0.01 + GROWTH + 0.02
    good = {CONTROL: 2.0, "R-4": 2.0 + 0.01, "R-102": peak, "R-410": 2.0 + HARM + 0.01}
    seeds = 10
    test = {arm: [value] * seeds for arm, value in good.items()}
    verdict = RepeatedData().check(made_up(test))
    assert verdict.ok and all(verdict.passed)
    test["R-410"][0] = 2.0 + HARM - 0.001  # seed 0: many repeats no worse than the control
    test["R-4"][1] = test["R-102"][1] - GROWTH + 0.001  # seed 1: too little growth from few repeats to 102
    test["R-410"][2] = peak - PEAK + 0.0005  # seed 2: no fall from 102 repeats to 410 (no peak)
    verdict = RepeatedData().check(made_up(test))
    assert verdict.passed[:4] == [False, False, False, True] and not verdict.ok  # 7 of 10 < 0.9
    assert "test loss was only" in verdict.failures[0] and "exceeded R-4's by only" in verdict.failures[1]
    assert "exceeded R-410's by only" in verdict.failures[2]
    assert verdict.measures["harm R-102 - harm R-410"][3] == pytest.approx(0.01 + GROWTH + 0.02 - HARM - 0.01)
