"""The `massive_activations` probe against an independent numpy computation of
Sun et al.'s measure ("Massive Activations in Large Language Models"): per
example, the top-1 and the median (the lower middle value, as torch.median)
of |h| over a layer output's positions and dimensions, averaged over
examples; where the top-1 sits (the most frequent dimension and position,
ties to the lowest). On hand-made activations and on the transformer's own
residual stream, read through forward hooks on its blocks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from pydantic import ValidationError

from learnscope.catalog.massive_activations import (
    INIT_MAX,
    LAYERS,
    LEVEL,
    MAIN,
    RISE,
    distinct_per_row,
    trailing_same,
)
from learnscope.catalog.massive_activations import MassiveActivations as MassiveActivationsPhenomenon
from learnscope.errors import LearnscopeError, SpecError
from learnscope.probes.massive import massive_activations
from learnscope.results import ArmData
from learnscope.spec import Experiment
from learnscope.store.base import RunRecord
from learnscope.train.trainer import Trainer


def numpy_massive(hidden: np.ndarray) -> dict[str, np.ndarray]:
    """hidden [S, N, T, D] -> per seed: mean top-1, mean median, their ratio, and the
    most frequent dimension and position of the top-1 with their shares, by loops."""
    S, N, T, D = hidden.shape
    out: dict[str, list[float]] = {k: [] for k in ("top", "median", "ratio", "dim", "dim_share", "position",
                                                   "position_share")}
    for s in range(S):
        tops, medians, dims, positions = [], [], [], []
        for n in range(N):
            values = np.abs(hidden[s, n].astype(np.float64))
            flat = values.reshape(-1)
            tops.append(flat.max())
            medians.append(np.sort(flat)[(flat.size - 1) // 2])
            t, d = np.unravel_index(np.argmax(values), values.shape)  # the first maximum in row-major order
            dims.append(d)
            positions.append(t)
        top, median = np.mean(tops), np.mean(medians)
        dim_counts, position_counts = np.bincount(dims, minlength=D), np.bincount(positions, minlength=T)
        out["top"].append(top)
        out["median"].append(median)
        out["ratio"].append(top / median)
        out["dim"].append(np.argmax(dim_counts))  # the lowest among ties
        out["dim_share"].append(dim_counts.max() / N)
        out["position"].append(np.argmax(position_counts))
        out["position_share"].append(position_counts.max() / N)
    return {k: np.array(v, dtype=np.float64) for k, v in out.items()}


def assert_matches(got: dict[str, torch.Tensor], want: dict[str, np.ndarray]) -> None:
    assert set(got) == set(want)
    for key in want:
        np.testing.assert_allclose(got[key].numpy(), want[key], rtol=1e-12, err_msg=key)


def test_a_planted_massive_activation_is_found():
    rng = np.random.default_rng(0)
    hidden = rng.normal(0, 1, (2, 8, 6, 16))  # [S, N, T, D]
    hidden[0, :, 0, 3] = 500.0  # seed 0: one activation at position 0, dimension 3, in every example
    hidden[1, :, 2, 11] = -80.0  # seed 1: a negative one counts by its magnitude
    got = massive_activations(torch.from_numpy(hidden))
    assert got["dim"].tolist() == [3, 11] and got["position"].tolist() == [0, 2]
    assert got["dim_share"].tolist() == [1.0, 1.0] and got["position_share"].tolist() == [1.0, 1.0]
    assert got["top"].tolist() == [500.0, 80.0]
    assert got["ratio"][0] > 500 and got["ratio"][1] > 80  # the median magnitude of N(0, 1) is 0.67
    assert_matches(got, numpy_massive(hidden))


@pytest.mark.parametrize("shape", [(3, 5, 4, 8), (2, 7, 5, 3), (1, 1, 1, 1), (2, 4, 3, 5)])
def test_matches_numpy_on_random_activations(shape):
    rng = np.random.default_rng(sum(shape))
    hidden = rng.standard_t(2, shape).astype(np.float32)  # heavy tails: tops far from the median
    got = massive_activations(torch.from_numpy(hidden))
    assert all(v.dtype == torch.float64 and v.shape == (shape[0],) for v in got.values())
    assert_matches(got, numpy_massive(hidden))


def test_an_even_count_takes_the_lower_middle_value_and_ties_the_lowest_index():
    # one example of 2 x 2 values: magnitudes 1, 2, 4, 4; lower median 2 (numpy's would be 3)
    hidden = torch.tensor([[[[1.0, -4.0], [4.0, 2.0]]]])
    got = massive_activations(hidden)
    assert got["median"].tolist() == [2.0] and got["ratio"].tolist() == [2.0]
    assert got["dim"].tolist() == [1] and got["position"].tolist() == [0]  # the first of the tied maxima
    # two examples whose tops sit at dimensions 2 and 0: a tie of counts goes to dimension 0
    tied = torch.zeros(1, 2, 1, 3)
    tied[0, 0, 0, 2], tied[0, 1, 0, 0] = 9.0, 9.0
    tied += 0.5
    got = massive_activations(tied)
    assert got["dim"].tolist() == [0] and got["dim_share"].tolist() == [0.5]


def test_bad_arguments_are_refused_in_one_line():
    with pytest.raises(LearnscopeError, match=r"hidden must have 4 dimensions|\[S, N, T, D\]"):
        massive_activations(torch.zeros(2, 3, 4))
    with pytest.raises(LearnscopeError, match="floating"):
        massive_activations(torch.zeros(1, 2, 3, 4, dtype=torch.long))
    with pytest.raises(LearnscopeError, match="no values"):
        massive_activations(torch.zeros(1, 0, 3, 4))


# ---------------------------------------------------------------- on the transformer's residual stream

TASK = {"name": "markov-text", "vocab": 12, "length": 6, "branching": 2, "train_sequences": 32, "test_sequences": 16}
MODEL = {"name": "transformer", "layers": 3, "d_model": 16, "heads": 2, "d_mlp": 32}


def trainer(probe=None, model=None, seeds=(0, 1, 2)) -> Trainer:
    probe = probe or {"name": "massive_activations", "max_examples": 10}
    return Trainer(Experiment.model_validate({
        "task": TASK, "model": model or MODEL, "seeds": list(seeds), "recipe": {"steps": 1}, "probes": [probe]}))


def residual_stream(t: Trainer, x: torch.Tensor) -> list[np.ndarray]:
    """Each block's output [S, N, T, D], read by forward hooks (not the model's sites)."""
    outputs: list[np.ndarray] = []
    hooks = [block.register_forward_hook(lambda module, args, out: outputs.append(out.detach().numpy()))
             for block in t.model.blocks]
    try:
        with torch.no_grad():
            t.model(x)
    finally:
        for hook in hooks:
            hook.remove()
    return outputs


@pytest.mark.parametrize("planted", [False, True])
def test_probe_matches_numpy_on_the_models_residual_stream(planted):
    t = trainer()
    if planted:  # seed 1's <bos> embedding (token 12) carries 40 at dimension 7: the stream keeps it at position 0
        with torch.no_grad():
            t.model.embed.weight[1, TASK["vocab"], 7] = 40.0
    x = t.data.splits["test"][0][:, :10]
    streams = residual_stream(t, x)
    assert len(streams) == MODEL["layers"]
    measured = t.measure()
    names = {f"massive_activations/{k}.{i}" for i in range(3)
             for k in ("ratio", "top", "median", "dim", "dim_share", "position", "position_share")}
    assert set(measured) == names | {"massive_activations/ratio"}
    for i, stream in enumerate(streams):
        want = numpy_massive(stream)
        for key, value in want.items():
            np.testing.assert_allclose(measured[f"massive_activations/{key}.{i}"].numpy(), value, rtol=1e-12,
                                       err_msg=f"{key}.{i}")
    np.testing.assert_allclose(measured["massive_activations/ratio"].numpy(),
                               np.max([numpy_massive(s)["ratio"] for s in streams], axis=0), rtol=1e-12)
    if planted:
        for i in range(3):
            assert measured[f"massive_activations/dim.{i}"][1] == 7
            assert measured[f"massive_activations/position.{i}"][1] == 0
            assert measured[f"massive_activations/ratio.{i}"][1] > 20
    else:  # at initialization the largest magnitude is a few times the median
        assert (measured["massive_activations/ratio"] < 10).all()


def test_the_probe_reads_its_split_and_examples():
    t = trainer({"name": "massive_activations", "split": "train", "max_examples": 5})
    stream = residual_stream(t, t.data.splits["train"][0][:, :5])[-1]
    measured = t.measure()["massive_activations/top.2"].numpy()
    np.testing.assert_allclose(measured, numpy_massive(stream)["top"], rtol=1e-12)
    assert len(set(measured.tolist())) == 3  # per seed


def test_refusals_are_one_line():
    with pytest.raises(SpecError, match=r"probes\[0\].split: unknown split 'valid'"):
        trainer({"name": "massive_activations", "split": "valid"})
    with pytest.raises(SpecError, match=r"probes\[0\].*residual stream.*resid\.0"):
        Trainer(Experiment.model_validate({
            "task": {"name": "gaussian-mixture", "classes": 3, "dim": 4, "samples": 30},
            "model": {"name": "mlp", "hidden": [8]}, "recipe": {"steps": 1},
            "probes": ["massive_activations"], "seeds": 1}))
    with pytest.raises((ValidationError, SpecError), match="max_examples"):
        trainer({"name": "massive_activations", "max_examples": 0})


# ---------------------------------------------------------------- the phenomenon's helpers


def test_trailing_same_counts_the_last_equal_entries():
    values = np.array([[3, 1, 1, 1], [2, 2, 2, 2], [1, 2, 1, 3], [5, 5, 4, 5]])
    assert trailing_same(values).tolist() == [3, 4, 1, 1]


def test_distinct_per_row_counts_the_values_of_each_row():
    values = np.array([[3, 1, 1, 1], [2, 2, 2, 2], [1, 2, 1, 3], [27, 0, 27, 0]], dtype=float)
    assert distinct_per_row(values).tolist() == [len(set(row)) for row in values.tolist()] == [2, 1, 3, 2]


# ---------------------------------------------------------------- the signature, on made-up curves

STEPS = list(range(0, 1001, 100))


def fake_arm(seeds: list[dict]) -> dict[str, ArmData]:
    """One arm `wd-0.1` whose seeds follow {start, end (the largest ratio), dims (per layer, over the
    probes), share, position} with the ratio geometric in between."""
    rows = []
    for seed, spec in enumerate(seeds):
        ratios = np.geomspace(spec["start"], spec["end"], len(STEPS))
        for t, step in enumerate(STEPS):
            rows.append(("r", seed, step, "massive_activations/ratio", ratios[t]))
            rows.append(("r", seed, step, "loss/test", 0.26))
            for layer in range(LAYERS):
                values = {"ratio": ratios[t], "top": ratios[t] / 2, "median": 0.5, "dim": spec["dims"][layer][t],
                          "dim_share": spec.get("share", [1.0, 1.0])[layer],
                          "position": spec.get("position", [0, 0])[layer], "position_share": 1.0}
                rows += [("r", seed, step, f"massive_activations/{kind}.{layer}", value)
                         for kind, value in values.items()]
    record = RunRecord("r.wd-0.1", "massive-activations", "experiment", "r", MAIN, {}, list(range(len(seeds))),
                       "finished", None, 0.0, None, "", "")
    return {MAIN: ArmData(record, pd.DataFrame(rows, columns=["run_id", "seed", "step", "name", "value"]))}


def test_the_signature_needs_a_rise_to_the_level_at_a_few_dimensions_on_the_first_token():
    fixed = [[7] * len(STEPS)] * LAYERS
    good = {"start": 5.0, "end": 100.0, "dims": fixed}
    alternating = [7, 9] * 6
    seeds = [dict(good) for _ in range(10)]
    seeds[7] = {**good, "dims": [alternating[: len(STEPS)]] * LAYERS}  # two dimensions take turns: a few
    verdict = MassiveActivationsPhenomenon().check(fake_arm(seeds))
    assert verdict.ok and all(verdict.passed)
    assert verdict.measures["dimensions at the last probes"][7] == 2
    seeds[1] = {**good, "start": INIT_MAX + 1}  # starts massive
    seeds[2] = {**good, "end": good["start"] * RISE * 0.95}  # rises too little (and ends below LEVEL)
    seeds[3] = {**good, "start": 3.0, "end": LEVEL * 0.9}  # rises enough, ends below LEVEL
    seeds[4] = {**good, "dims": [fixed[0], [7] * 8 + [1, 2, 3]]}  # layer 1: 4 dimensions over the last 5 probes
    seeds[5] = {**good, "share": [0.5, 1.0]}  # layer 0: the top-1 at that dimension in half the examples
    seeds[6] = {**good, "position": [0, 3]}  # layer 1: not on the first token
    verdict = MassiveActivationsPhenomenon().check(fake_arm(seeds))
    assert verdict.passed == [True, False, False, False, False, False, False, True, True, True]
    assert "at step 0 is 11.00" in verdict.failures[1]
    assert "at the end" in verdict.failures[2]
    assert "final ratio 36.0" in verdict.failures[3]
    assert "4 dimensions" in verdict.failures[4]
    assert "share 0.50" in verdict.failures[5]
    assert "[0, 3]" in verdict.failures[6]
    assert not verdict.ok  # 4 of 10 seeds: 9 needed (90%)
    np.testing.assert_allclose(verdict.measures["rise"][0], 20.0)
