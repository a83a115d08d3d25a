"""Ensemble equivalence: seed k of an S-seed ensemble is a single run with
seed k — same initialization, same data and batch order, same metrics and
parameters — for every model family, optimizer, schedule and intervention
used here. Compared through the real Trainer, step by step at probe steps."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from learnscope.spec import Experiment
from learnscope.train.passes import PassPlan
from learnscope.train.trainer import Trainer

STEPS = 50
PROBE_EVERY = 10
ENSEMBLE = [0, 1, 2, 3]
METRIC_RTOL = 1e-5
PARAM_RTOL, PARAM_ATOL = 1e-5, 1e-6
PROBES = ["accuracy", "loss", "weight_norm"]

MODULAR = {"name": "modular-arithmetic", "p": 13, "op": "+", "train_fraction": 0.5}
# probe_log_points 0: probes exactly every PROBE_EVERY steps (and the test stays cheap)
ADAMW = {"optimizer": "adamw", "lr": 1e-2, "weight_decay": 1.0, "steps": STEPS, "probe_every": PROBE_EVERY,
         "probe_log_points": 0}

CASES = {
    "mlp-vector-sgd-momentum-minibatch": {
        "task": {"name": "gaussian-mixture", "classes": 4, "dim": 8, "samples": 256, "test_samples": 64},
        "model": {"name": "mlp", "hidden": [32, 32]},
        # 256 / 32 = 8 batches per epoch: 50 steps cross several reshuffles
        "recipe": {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "steps": STEPS, "batch_size": 32,
                   "probe_every": PROBE_EVERY, "probe_log_points": 0},
    },
    "mlp-tokens-adamw-fullbatch": {
        "task": MODULAR,
        "model": {"name": "mlp", "embed": 8, "hidden": [32]},
        "recipe": ADAMW,
    },
    "transformer-layernorm": {
        "task": MODULAR,
        "model": {"name": "transformer", "layers": 1, "d_model": 16, "heads": 2, "d_mlp": 32, "layernorm": True},
        "recipe": ADAMW,
    },
    "transformer-2-layers": {
        "task": MODULAR,
        "model": {"name": "transformer", "layers": 2, "d_model": 16, "heads": 4, "d_mlp": 32, "layernorm": False},
        "recipe": ADAMW,
    },
    "mlp-grokfast-ema-warmup-cosine": {
        "task": MODULAR,
        "model": {"name": "mlp", "embed": 8, "hidden": [32]},
        "recipe": {**ADAMW, "schedule": "warmup_cosine", "warmup_steps": 10, "min_lr_ratio": 0.1},
        "interventions": [{"name": "grokfast", "filter": "ema", "alpha": 0.9, "lamb": 2.0}],
    },
    "transformer-grokfast-ma-warmup-cosine": {
        "task": MODULAR,
        "model": {"name": "transformer", "d_model": 16, "heads": 2, "d_mlp": 32},
        "recipe": {**ADAMW, "schedule": "warmup_cosine", "warmup_steps": 5},
        "interventions": [{"name": "grokfast", "filter": "ma", "window": 7, "lamb": 1.0}],
    },
    "mlp-tokens-adamw-microbatched": {  # 84 examples in passes of 20: the last pass is ragged
        "task": MODULAR,
        "model": {"name": "mlp", "embed": 8, "hidden": [32]},
        "recipe": {**ADAMW, "microbatch": 20},
    },
    "mlp-vector-sgd-minibatch-grokfast-warmup-cosine": {
        "task": {"name": "gaussian-mixture", "classes": 3, "dim": 6, "samples": 96, "test_samples": 30},
        "model": {"name": "mlp", "hidden": [16]},
        "recipe": {"optimizer": "sgd", "lr": 0.1, "momentum": 0.5, "steps": STEPS, "batch_size": 16,
                   "schedule": "warmup_cosine", "warmup_steps": 8, "probe_every": PROBE_EVERY,
                   "probe_log_points": 0},
        "interventions": [{"name": "grokfast"}],
    },
}


def experiment(case: dict, seeds: list[int]) -> Experiment:
    return Experiment.model_validate({**copy.deepcopy(case), "probes": PROBES, "seeds": seeds})


def train(case: dict, seeds: list[int]) -> tuple[Trainer, dict[int, dict[str, np.ndarray]]]:
    trainer = Trainer(experiment(case, seeds))
    record: dict[int, dict[str, np.ndarray]] = {}

    def on_probe(step, metrics):
        record[step] = {name: value.detach().double().cpu().numpy().copy() for name, value in metrics.items()}

    trainer.run(on_probe=on_probe)
    return trainer, record


@pytest.fixture(scope="module", params=list(CASES), ids=list(CASES))
def ensemble_run(request):
    case = CASES[request.param]
    trainer, record = train(case, ENSEMBLE)
    return case, trainer, record


def test_probe_schedule_and_metric_names(ensemble_run):
    _, trainer, record = ensemble_run
    assert sorted(record) == list(range(0, STEPS + 1, PROBE_EVERY))
    assert trainer.step == STEPS
    for metrics in record.values():
        assert set(metrics) == {"accuracy/train", "accuracy/test", "loss/train", "loss/test", "weight_norm"}
        assert all(v.shape == (len(ENSEMBLE),) for v in metrics.values())


def test_seeds_really_differ(ensemble_run):
    """Without this, a seed mix-up (every member equal) would pass the equivalence."""
    _, trainer, record = ensemble_run
    norms = record[0]["weight_norm"]
    assert len(set(np.round(norms, 9))) == len(ENSEMBLE)
    final_loss = record[STEPS]["loss/train"]
    assert len(set(np.round(final_loss, 7))) == len(ENSEMBLE)
    # training moved the weights
    assert not np.allclose(record[0]["weight_norm"], record[STEPS]["weight_norm"])


@pytest.mark.parametrize("k", range(len(ENSEMBLE)))
def test_member_equals_single_run(ensemble_run, k):
    case, ensemble, ens_record = ensemble_run
    seed = ENSEMBLE[k]
    single, single_record = train(case, [seed])
    assert sorted(single_record) == sorted(ens_record)
    for step, metrics in single_record.items():
        for name, value in metrics.items():
            np.testing.assert_allclose(
                ens_record[step][name][k], value[0], rtol=METRIC_RTOL, atol=1e-9,
                err_msg=f"seed {seed}, step {step}, {name}",
            )
    names = [n for n, _ in ensemble.model.named_parameters()]
    assert names == [n for n, _ in single.model.named_parameters()]
    for name, p_ens, p_single in zip(names, ensemble.params, single.params):
        assert p_ens.shape[1:] == p_single.shape[1:], name
        torch.testing.assert_close(p_ens[k], p_single[0], rtol=PARAM_RTOL, atol=PARAM_ATOL, msg=name)


# ---------------------------------------------------------------- initialization


@pytest.mark.parametrize("name", [
    "mlp-vector-sgd-momentum-minibatch", "mlp-tokens-adamw-fullbatch", "transformer-layernorm", "transformer-2-layers",
])
def test_initialization_independent_of_ensemble_mates(name):
    case = CASES[name]
    alone = Trainer(experiment(case, [3]))
    shared = Trainer(experiment(case, [1, 3, 5]))
    other = Trainer(experiment(case, [1]))
    for p_alone, p_shared, p_other in zip(alone.params, shared.params, other.params):
        assert torch.equal(p_alone[0], p_shared[1])
        assert torch.equal(p_other[0], p_shared[0])
    # the data and the split of seed 3 are its own too
    for split, (x, y) in alone.data.splits.items():
        x_shared, y_shared = shared.data.splits[split]
        assert torch.equal(x[0], x_shared[1]) and torch.equal(y[0], y_shared[1]), split
    # and seeds differ, so the equalities above are not vacuous
    assert any(not torch.equal(p[0], p[1]) for p in shared.params)
    assert any(not torch.equal(p[1], p[2]) for p in shared.params)


def test_minibatch_order_independent_of_ensemble_mates():
    case = CASES["mlp-vector-sgd-momentum-minibatch"]
    alone = Trainer(experiment(case, [3]))
    shared = Trainer(experiment(case, [1, 3, 5]))
    per_epoch = alone.sampler.n // alone.recipe.batch_size
    for step in (0, 1, per_epoch - 1, per_epoch, 3 * per_epoch + 2):  # within and across epochs
        a, s = alone.sampler.indices(step), shared.sampler.indices(step)
        assert torch.equal(a[0], s[1]), step
        assert not torch.equal(s[0], s[1])
    # an epoch is a permutation: every example once
    epoch = torch.cat([alone.sampler.indices(i)[0] for i in range(per_epoch)])
    assert len(set(epoch.tolist())) == len(epoch) == per_epoch * alone.recipe.batch_size


@pytest.mark.parametrize(
    "task,model",
    [
        (MODULAR, {"name": "mlp", "embed": 8, "hidden": [32]}),
        ({"name": "teacher-student", "input_dim": 5, "samples": 90}, {"name": "mlp", "hidden": [16]}),
        (MODULAR, {"name": "transformer", "d_model": 16, "heads": 2, "d_mlp": 32}),
    ],
    ids=["cross-entropy", "mse", "transformer"],
)
@pytest.mark.parametrize("plan", [(1, 16), (1, 1000), (2, 1000), (2, 7), (3, 40)], ids=lambda p: f"{p[0]}-seeds-{p[1]}-examples")
def test_passes_accumulate_the_full_batch_gradient(task, model, plan):
    """Passes over groups of seeds and shares of the batch, each weighted by
    its share, give the one-pass gradient and loss (up to float reassociation)."""
    grads, losses = [], []
    for passes in (None, PassPlan(*plan)):
        spec = {"task": task, "model": model, "seeds": [0, 1, 2],
                "recipe": {"optimizer": "sgd", "lr": 0.1, "steps": 1}}
        trainer = Trainer(Experiment.model_validate(spec))
        trainer.plan = passes or PassPlan(3, 10**6)
        trainer.optimizer.step = lambda: None  # keep the gradient, skip the update
        trainer.train_step()
        grads.append([p.grad.clone() for p in trainer.params])
        losses.append(trainer.last_loss.clone())
    assert len(trainer.plan.passes(3, trainer.sampler.n)) > 1
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-6, atol=1e-7)
    for full, accumulated in zip(*grads):
        assert full.abs().max() > 0
        torch.testing.assert_close(accumulated, full, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("case", ["mlp-grokfast-ema-warmup-cosine", "transformer-grokfast-ma-warmup-cosine"])
def test_member_of_seed_groups_equals_single_run(case):
    """Trained in groups of two seeds (as large models are), each member still
    equals its single run."""
    grouped = Trainer(experiment(CASES[case], ENSEMBLE))
    grouped.plan = PassPlan(seeds=2, examples=grouped.plan.examples)
    grouped.run()
    for k, seed in enumerate(ENSEMBLE):
        single, _ = train(CASES[case], [seed])
        for p_group, p_single in zip(grouped.params, single.params):
            torch.testing.assert_close(p_group[k], p_single[0], rtol=PARAM_RTOL, atol=PARAM_ATOL)
