"""Continual-learning strategies (interventions/joint, regularizers,
rehearsal, distill), checked four ways:

- each piece against an independent reference on tiny inputs: EWC's Fisher
  against per-example gradients of the MLP written out in numpy, its
  gradient term against autograd of the penalty; SI's path integral against
  the gradients and updates of two steps; A-GEM's projection against its
  closed form; LwF's term against a numpy KL; reservoir sampling and the
  power-law choice against their distributions (fixed seeds);
- seed k of a 3-seed ensemble equals the single run with seed k, also when
  the ensemble trains in groups of seeds;
- a run resumed from a mid-block state after a switch (buffers, Fisher, Ω,
  snapshots non-trivial) ends bit for bit where the uninterrupted run does;
- each strategy forgets less than naive sequential training on the same
  stream and seeds; joint training hardly forgets at all.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors
from scipy import stats

from learnscope.errors import SpecError
from learnscope.interventions.distill import LwFState
from learnscope.interventions.regularizers import EWCState, SIState
from learnscope.interventions.rehearsal import Reservoir, power_law_choice, project_conflicting
from learnscope.runner import run_experiment
from learnscope.seeding import generator
from learnscope.spec import Experiment
from learnscope.train.passes import PassPlan
from learnscope.train.trainer import Trainer

RTOL, ATOL = 1e-5, 1e-6


def gaussians(classes: int, dim: int, samples: int, test_samples: int) -> dict:
    return {"name": "gaussian-mixture", "classes": classes, "dim": dim, "samples": samples,
            "test_samples": test_samples}


def experiment(task: dict, interventions: list, seeds=(0, 1, 2), steps: int = 90, hidden=(16,), lr: float = 0.05,
               momentum: float = 0.5, batch_size: int = 16) -> Experiment:
    splits = [f"test/{e}" for e in range(task["experiences"])] if "experiences" in task else ["test"]
    return Experiment.model_validate({
        "task": copy.deepcopy(task), "model": {"name": "mlp", "hidden": list(hidden)},
        "recipe": {"optimizer": "sgd", "lr": lr, "momentum": momentum, "steps": steps, "batch_size": batch_size,
                   "probe_every": None, "probe_log_points": 0},
        "interventions": copy.deepcopy(interventions), "seeds": list(seeds),
        "probes": [{"name": "accuracy", "splits": splits}],
    })


def trained_to(exp: Experiment, step: int) -> Trainer:
    trainer = Trainer(exp)
    while trainer.step < step:
        trainer.train_step()
    return trainer


# ---------------------------------------------------------------- numpy references


def numpy_params(trainer: Trainer, k: int) -> list[np.ndarray]:
    """Seed k's parameters of a one-hidden-layer MLP: W1 [d, h], b1 [1, h], W2 [h, C], b2 [1, C]."""
    return [p[k].detach().double().numpy().copy() for p in trainer.params]


def mlp_forward(params: list[np.ndarray], x: np.ndarray):
    w1, b1, w2, b2 = params
    pre = x @ w1 + b1
    hidden = np.maximum(pre, 0)
    return pre, hidden, hidden @ w2 + b2


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def per_example_gradients(params: list[np.ndarray], x: np.ndarray, y: np.ndarray) -> list[np.ndarray]:
    """Gradients of each example's cross-entropy, by hand: [n, *shape] per parameter."""
    w1, b1, w2, b2 = params
    pre, hidden, logits = mlp_forward(params, x)
    d_logits = softmax(logits)
    d_logits[np.arange(len(y)), y] -= 1
    d_pre = (d_logits @ w2.T) * (pre > 0)
    return [x[:, :, None] * d_pre[:, None, :], d_pre[:, None, :],
            hidden[:, :, None] * d_logits[:, None, :], d_logits[:, None, :]]


def experience_data(trainer: Trainer, split: str, k: int) -> tuple[np.ndarray, np.ndarray]:
    x, y = trainer.data.splits[split]
    return x[k].double().numpy(), y[k].numpy()


# ---------------------------------------------------------------- EWC

PERMUTED_TINY = {"name": "permuted-stream", "experiences": 3, "base": gaussians(4, 6, 40, 20)}


def assert_penalty_gradient(trainer, state, strength: float) -> None:
    """The quadratic penalty's gradient added after backward is autograd's
    gradient of strength · Σ importance · (θ − anchor)²."""
    theta = [p.detach().clone().requires_grad_() for p in trainer.params]
    penalty = sum((strength * f * (t - a) ** 2).sum()
                  for t, f, a in zip(theta, state.penalty.importance, state.penalty.anchor))
    expected = torch.autograd.grad(penalty, theta)
    for p in trainer.params:
        p.grad = torch.zeros_like(p)
    state.after_backward(trainer)
    for p, want in zip(trainer.params, expected):
        assert want.abs().max() > 0
        torch.testing.assert_close(p.grad, want, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("batches,batch_size", [(40, 1), (1, 40)], ids=["per-example", "full-batch"])
def test_fisher_equals_squared_gradients_computed_by_hand(batches, batch_size):
    """A permutation pass through the 40 examples of an experience: in batches
    of 1 the Fisher is the mean of per-example squared gradients, in one
    batch of 40 the square of the mean gradient, whatever the order. At the
    second switch the online update F ← gamma·F + F_new."""
    gamma = 0.5
    ewc = {"name": "ewc", "lamb": 3.0, "gamma": gamma, "fisher_batches": batches, "fisher_batch_size": batch_size}
    trainer = trained_to(experiment(PERMUTED_TINY, [ewc], seeds=(0, 1), steps=6, batch_size=8), 2)
    state: EWCState = trainer.interventions[0]
    expected = {}
    for switch, finished in ((2, 0), (4, 1)):  # blocks of 2 updates
        assert trainer.step == switch
        before = [numpy_params(trainer, k) for k in range(2)]
        trainer.train_step()  # its block begins: the Fisher of `finished` at the parameters before the update
        for k in range(2):
            per_example = per_example_gradients(before[k], *experience_data(trainer, f"train/{finished}", k))
            new = [(g ** 2).mean(0) if batch_size == 1 else g.mean(0) ** 2 for g in per_example]
            expected[k] = new if finished == 0 else [gamma * old + f for old, f in zip(expected[k], new)]
            for got, want, anchor, p in zip(state.penalty.importance, expected[k], state.penalty.anchor, before[k]):
                assert want.max() > 0
                np.testing.assert_allclose(got[k].double().numpy(), want, rtol=1e-4, atol=1e-9)
                np.testing.assert_array_equal(anchor[k].double().numpy(), p)
        trainer.train_step()


def test_ewc_gradient_term_equals_autograd_of_the_penalty():
    lamb = 7.0
    trainer = trained_to(experiment(PERMUTED_TINY, [{"name": "ewc", "lamb": lamb, "fisher_batches": 5,
                                                     "fisher_batch_size": 3}], steps=6, batch_size=8), 4)
    state: EWCState = trainer.interventions[0]
    assert state.penalty.importance is not None and any(
        not torch.equal(p, a) for p, a in zip(trainer.params, state.penalty.anchor))  # moved since the anchor
    assert_penalty_gradient(trainer, state, strength=lamb / 2)


# ---------------------------------------------------------------- SI


def test_si_path_integral_and_importance_by_hand():
    """Two updates with momentum (Δθ is not −lr·g): ω = −Σ_t g_t·Δθ_t with g_t
    the task-loss gradient of update t's batch; at the switch Ω = ω /
    ((θ − θ_start)² + xi), and the penalty's gradient is autograd's."""
    c, xi = 0.5, 0.1
    exp = experiment(PERMUTED_TINY, [{"name": "si", "c": c, "xi": xi}], steps=6, batch_size=8, momentum=0.9)
    trainer = Trainer(exp)
    state: SIState = trainer.interventions[0]
    thetas, grads = [], []
    for _ in range(2):
        thetas.append([p.detach().clone() for p in trainer.params])
        grads.append(trainer.gradients(*trainer.batch()))
        trainer.train_step()
    thetas.append([p.detach().clone() for p in trainer.params])
    path = [-(grads[0][i] * (thetas[1][i] - thetas[0][i]) + grads[1][i] * (thetas[2][i] - thetas[1][i]))
            for i in range(len(trainer.params))]
    for got, want in zip(state.path, path):
        assert want.abs().max() > 0
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-9)

    grads.append(trainer.gradients(*trainer.batch()))
    trainer.train_step()  # the switch: consolidation at θ_2, then update 2
    for got, omega, end, start, anchor in zip(state.penalty.importance, path, thetas[2], thetas[0],
                                              state.penalty.anchor):
        torch.testing.assert_close(got, omega / ((end - start) ** 2 + xi), rtol=1e-5, atol=1e-9)
        assert torch.equal(anchor, end)
    for got, g, p, before in zip(state.path, grads[2], trainer.params, thetas[2]):  # ω restarted at the switch
        torch.testing.assert_close(got, -g * (p.detach() - before), rtol=1e-5, atol=1e-9)

    assert_penalty_gradient(trainer, state, strength=c)


# ---------------------------------------------------------------- A-GEM


def test_agem_projection_equals_the_closed_form_per_seed():
    """Seed 0's gradient conflicts with its reference (g·g_ref < 0) and is
    projected; seed 1's agrees and seed 2's reference is zero: both untouched."""
    gen = torch.Generator().manual_seed(0)
    shapes = [(3, 4, 5), (3, 1, 5)]
    ref = [torch.randn(s, generator=gen, dtype=torch.float64) for s in shapes]
    grads = [torch.randn(s, generator=gen, dtype=torch.float64) for s in shapes]

    def flat(tensors, k):
        return np.concatenate([t[k].numpy().ravel() for t in tensors])

    for k, target in ((0, -0.5), (1, 0.5)):  # g ← g − a·r with a such that g·r = target·r·r
        g, r = flat(grads, k), flat(ref, k)
        a = (g @ r) / (r @ r) - target
        for t, rt in zip(grads, ref):
            t[k] -= a * rt[k]
    for r in ref:
        r[2] = 0
    before = [g.clone() for g in grads]
    project_conflicting(grads, ref)

    g0, r0 = flat(before, 0), flat(ref, 0)
    assert g0 @ r0 < 0
    np.testing.assert_allclose(flat(grads, 0), g0 - (g0 @ r0) / (r0 @ r0) * r0, rtol=1e-12, atol=1e-12)
    assert abs(flat(grads, 0) @ r0) < 1e-9  # no longer increases the reference loss
    assert flat(before, 1) @ flat(ref, 1) > 0
    for k in (1, 2):  # non-conflicting gradients are left exactly as they were
        assert all(torch.equal(a[k], b[k]) for a, b in zip(grads, before))


# ---------------------------------------------------------------- LwF


SPLIT_TINY = {"name": "split-stream", "experiences": 3, "base": gaussians(6, 5, 60, 30)}


@pytest.mark.parametrize("task,heads", [  # the classes of each distilled softmax, after the switches at 2 and 4
    (SPLIT_TINY, {2: [[0, 1]], 4: [[0, 1, 2, 3]]}),  # class-incremental: the old classes, one softmax
    ({**SPLIT_TINY, "scenario": "task"}, {2: [[0, 1]], 4: [[0, 1], [2, 3]]}),  # one softmax per old head
    ({**PERMUTED_TINY, "base": gaussians(6, 5, 60, 30)}, {2: [list(range(6))], 4: [list(range(6))]}),  # all
], ids=["class-incremental", "task-incremental", "permuted"])
def test_lwf_term_equals_a_manual_kl(task, heads):
    """After each switch: alpha·T²·mean over examples of KL(softmax(old/T) ‖
    softmax(new/T)) over the distilled classes, the old logits from the
    parameters at the switch through a numpy MLP; for any slice of seeds."""
    alpha, temperature = 0.7, 2.5
    trainer = trained_to(experiment(task, [{"name": "lwf", "alpha": alpha, "temperature": temperature}],
                                    seeds=(0, 1, 2), steps=6, batch_size=8), 2)
    state: LwFState = trainer.interventions[0]
    x = trainer.data.splits["test/1"][0][:, :7]
    assert state.loss(trainer, x, torch.zeros(3, 7, 6), None, slice(0, 3)) is None  # nothing to distill yet
    for switch in (2, 4):
        old = [numpy_params(trainer, k) for k in range(3)]
        trainer.train_step()
        outputs = torch.randn(3, 7, 6, generator=torch.Generator().manual_seed(switch))
        got = state.loss(trainer, x, outputs, None, slice(0, 3))
        assert got.shape == (3,)
        for k in range(3):
            old_logits = mlp_forward(old[k], x[k].double().numpy())[2]
            total = 0.0
            for classes in heads[switch]:
                p_old = softmax(old_logits[:, classes] / temperature)
                p_new = softmax(outputs[k].double().numpy()[:, classes] / temperature)
                total = total + (p_old * (np.log(p_old) - np.log(p_new))).sum(1)
            want = alpha * temperature ** 2 * total.mean()
            assert want > 0
            np.testing.assert_allclose(got[k].item(), want, rtol=1e-5)
        part = state.loss(trainer, x[1:3], outputs[1:3], None, slice(1, 3))  # a group of seeds
        torch.testing.assert_close(part, got[1:3], rtol=1e-6, atol=1e-9)
        trainer.train_step()


# ---------------------------------------------------------------- reservoir sampling


def test_reservoir_holds_a_uniform_sample_of_everything_offered():
    """1500 independent reservoirs (one per seed) of 12 slots offered items
    0..69 in batches of 9 (the last of 7): after each batch every reservoir
    holds min(offered, 12) distinct items already offered; at the end each
    item is held by about 12/70 of the reservoirs (chi-square, fixed seeds)."""
    members, size, items = 1500, 12, 70
    ids = torch.arange(items)
    reservoir = Reservoir(size, members, torch.zeros(members, 1, 1), torch.zeros(members, 1, dtype=torch.long))
    for step, start in enumerate(range(0, items, 9)):
        batch = ids[start : start + 9]
        x = batch.float().view(1, -1, 1).expand(members, -1, 1)
        y = batch.view(1, -1).expand(members, -1)
        gens = [generator(seed, "replay", step) for seed in range(members)]
        if reservoir.filled:
            sx, sy = reservoir.sample(5, gens)
            assert sy.shape == (members, 5) and torch.equal(sx[..., 0].long(), sy)
            held = reservoir.y[:, : reservoir.filled]
            assert all(set(row) <= set(h) and len(set(row)) == 5 for row, h in zip(sy.tolist(), held.tolist()))
        reservoir.offer(x, y, gens)
        offered = start + len(batch)
        assert reservoir.offered == offered and reservoir.filled == min(offered, size)
        held = reservoir.y[:, : reservoir.filled]
        assert torch.equal(reservoir.x[:, : reservoir.filled, 0].long(), held)
        assert (held < offered).all()
        assert all(len(set(row)) == reservoir.filled for row in held.tolist())  # each item at most once
    counts = torch.bincount(reservoir.y.flatten(), minlength=items).numpy()
    expected = members * size / items
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < stats.chi2.ppf(0.999, items - 1), (chi2, counts)
    assert counts.min() > 0.7 * expected and counts.max() < 1.3 * expected


# ---------------------------------------------------------------- power-law choice


@pytest.mark.parametrize("exponent", [0.0, 1.0, 2.0])
def test_power_law_choice_follows_the_power_law(exponent):
    """At update 100, experiences last seen at updates 97, 90 and 60 (ages 3,
    10, 40; experience 3 is not a candidate): over 6000 independent draws the
    frequencies follow age^-exponent (chi-square, fixed seeds)."""
    draws = 6000
    last_seen = torch.tensor([97, 90, 60, 99]).expand(draws, 4)
    candidates = torch.tensor([True, True, True, False])
    gens = [generator(seed, "power-law", 100) for seed in range(draws)]
    chosen = power_law_choice(last_seen, candidates, 100, exponent, gens)
    counts = np.bincount(chosen.numpy(), minlength=4)
    assert counts[3] == 0
    weights = np.array([3.0, 10.0, 40.0]) ** -exponent
    expected = draws * weights / weights.sum()
    assert stats.chisquare(counts[:3], expected).pvalue > 1e-3, (counts, expected)


# ---------------------------------------------------------------- ensembles and resume

PERMUTED = {"name": "permuted-stream", "experiences": 3, "base": gaussians(4, 8, 96, 48)}
SPLIT = {"name": "split-stream", "experiences": 3, "base": gaussians(6, 8, 144, 48)}
# blocks of 15 updates on experiences 0, 0, 1, 0, 2, 1: a block that repeats one, and revisits of old ones
POWER_LAW = {**PERMUTED, "schedule": "power-law", "revisits": 1, "exponent": 0.5, "order_seed": 5}

STRATEGIES = {
    "joint": (SPLIT, {"name": "joint"}),
    "joint-cumulative": (SPLIT, {"name": "joint", "cumulative": True}),
    "ewc": (POWER_LAW, {"name": "ewc", "gamma": 0.8, "fisher_batches": 6, "fisher_batch_size": 4}),
    "si": (PERMUTED, {"name": "si", "c": 0.5}),
    "replay": (SPLIT, {"name": "replay", "buffer_size": 24, "replay_batch": 8}),
    "power-law-rehearsal": (POWER_LAW, {"name": "power-law-rehearsal", "memory_per_experience": 16,
                                        "replay_batch": 8, "exponent": 1.5}),
    "lwf": (SPLIT, {"name": "lwf"}),
    "lwf-task-incremental": ({**SPLIT, "scenario": "task"}, {"name": "lwf", "temperature": 3.0}),
    "agem": (PERMUTED, {"name": "agem", "memory_per_experience": 16, "reference_batch": 10}),
}
ENSEMBLE = [0, 1, 2]
STEPS = 90


def record_run(trainer: Trainer) -> dict[int, dict[str, np.ndarray]]:
    record = {}
    trainer.run(on_probe=lambda step, metrics: record.__setitem__(
        step, {name: value.double().numpy().copy() for name, value in metrics.items()}))
    return record


@pytest.fixture(scope="module", params=list(STRATEGIES))
def ensemble_run(request):
    task, strategy = STRATEGIES[request.param]
    exp = experiment(task, [strategy], seeds=ENSEMBLE, steps=STEPS)
    trainer = Trainer(exp)
    return request.param, exp, trainer, record_run(trainer)


def test_member_equals_single_run(ensemble_run):
    name, exp, ensemble, record = ensemble_run
    first = ensemble.params[0]
    assert not torch.equal(first[0], first[1]) and not torch.equal(first[1], first[2])  # seeds differ
    for k, seed in enumerate(ENSEMBLE):
        single = Trainer(Experiment.model_validate({**exp.to_dict(), "seeds": [seed]}))
        single_record = record_run(single)
        assert sorted(single_record) == sorted(record)
        for step, metrics in single_record.items():
            for metric, value in metrics.items():
                np.testing.assert_allclose(record[step][metric][k], value[0], rtol=RTOL,
                                           err_msg=f"{name}, seed {seed}, step {step}, {metric}")
        for p_ens, p_single in zip(ensemble.params, single.params):
            torch.testing.assert_close(p_ens[k], p_single[0], rtol=RTOL, atol=ATOL, msg=f"{name}, seed {seed}")


def test_member_of_seed_groups_equals_the_ensemble(ensemble_run):
    """Trained one seed per pass and 7 examples per pass (as large models are),
    the ensemble is the same: loss terms, Fisher and reference gradients go
    through the passes too."""
    name, exp, ensemble, _ = ensemble_run
    grouped = Trainer(exp)
    grouped.plan = PassPlan(seeds=1, examples=7)
    grouped.run()
    for p_group, p_ens in zip(grouped.params, ensemble.params):
        torch.testing.assert_close(p_group, p_ens, rtol=RTOL, atol=ATOL, msg=name)


def test_resumed_run_ends_bit_for_bit_where_the_uninterrupted_one_does(ensemble_run):
    name, exp, ensemble, _ = ensemble_run
    # inside a block, after at least one switch (in the power-law stream, inside a revisit after four)
    split_at = 52 if exp.task.schedule == "sequential" else 80
    first = trained_to(exp, split_at)
    assert any(b.start < split_at < b.stop for b in first.blocks[1:])
    if exp.task.schedule == "power-law":
        assert [b.experience for b in first.blocks] == [0, 0, 1, 0, 2, 1]
    tensors, meta = first.state()
    tensors = load_tensors(save_tensors(tensors))  # as a checkpoint file holds them
    state_keys = [key for key in tensors if key.startswith("intervention/")]
    assert state_keys or name.startswith("joint")  # a strategy with state has it in the checkpoint
    resumed = Trainer(exp)
    resumed.load_state(tensors, meta)
    resumed.run()
    for p_resumed, p_whole in zip(resumed.params, ensemble.params):
        assert torch.equal(p_resumed, p_whole), name


def test_power_law_rehearsal_rehearses_one_earlier_experience_from_its_memory():
    """In the revisit of experience 0 (updates 45-59), with experiences 0 and 1
    in memory, every update rehearses experience 1 (the current one is never
    rehearsed): 8 examples of its memory, which holds 16 of its training examples."""
    task, strategy = STRATEGIES["power-law-rehearsal"]
    trainer = trained_to(experiment(task, [strategy], seeds=ENSEMBLE, steps=STEPS), 50)
    state = trainer.interventions[0]
    assert trainer.blocks[3].experience == 0 and state.memory.stored.tolist() == [True, True, False]
    assert (state.last_seen[:, :2] == 49).all() and (state.last_seen[:, 2] == -1).all()
    x, y = trainer.batch()
    joined_x, joined_y = state.batch(trainer, x, y)
    assert joined_x.shape == (3, 16 + 8, 8) and torch.equal(joined_x[:, :16], x) and torch.equal(joined_y[:, :16], y)
    train_x = trainer.data.splits["train/1"][0]
    for k in range(3):
        memory = state.memory.x[k, 1]
        assert len({tuple(row) for row in memory.tolist()}) == 16  # distinct examples
        assert all((train_x[k] == row).all(1).any() for row in memory)  # of experience 1, this seed's
        assert all((memory == row).all(1).any() for row in joined_x[k, 16:])


# ---------------------------------------------------------------- what the strategies are for

FORGETTING_TASK = {"name": "permuted-stream", "experiences": 3, "base": gaussians(4, 16, 256, 128)}
FORGETTING_SEEDS = (0, 1, 2)


def continual(task: dict, interventions: list, store) -> dict[str, np.ndarray]:
    exp = experiment(task, interventions, seeds=FORGETTING_SEEDS, steps=300, hidden=(32,), lr=0.1, momentum=0.0)
    run = run_experiment(exp, store=store)
    assert not run.diverged  # every seed counts
    final = run.final()
    return {name[len("continual/"):]: group.sort_values("seed")["value"].to_numpy()
            for name, group in final.groupby("name") if name.startswith("continual/")}


@pytest.fixture(scope="module")
def forgetting_store(tmp_path_factory):
    return tmp_path_factory.mktemp("strategies")


@pytest.fixture(scope="module")
def naive(forgetting_store):
    measures = continual(FORGETTING_TASK, [], forgetting_store)
    assert measures["forgetting"].mean() > 0.3  # the stream does make naive training forget
    return measures


@pytest.mark.parametrize("strategy", [
    {"name": "ewc"}, {"name": "si"}, {"name": "replay"}, {"name": "power-law-rehearsal"}, {"name": "lwf"},
    {"name": "agem"},
], ids=lambda s: s["name"])
def test_strategy_forgets_less_than_naive_training(strategy, naive, forgetting_store):
    measures = continual(FORGETTING_TASK, [strategy], forgetting_store)
    print(strategy["name"], "forgetting", measures["forgetting"], "naive", naive["forgetting"])
    assert measures["forgetting"].mean() < 0.75 * naive["forgetting"].mean()


def test_joint_training_hardly_forgets(naive, forgetting_store):
    """Backward transfer near zero (slightly positive: old experiences keep
    being trained on), where naive training's is strongly negative."""
    measures = continual(FORGETTING_TASK, [{"name": "joint"}], forgetting_store)
    print("joint backward transfer", measures["backward_transfer"], "naive", naive["backward_transfer"])
    assert -0.05 < measures["backward_transfer"].mean() < 0.1
    assert measures["forgetting"].mean() < 0.05


# ---------------------------------------------------------------- bad parameters


@pytest.mark.parametrize("strategy,message", [
    ({"name": "ewc", "gamma": 1.5}, "interventions[0].gamma: Input should be less than or equal to 1"),
    ({"name": "ewc", "fisher_batches": 0}, "interventions[0].fisher_batches: Input should be greater than or equal"),
    ({"name": "si", "xi": 0}, "interventions[0].xi: Input should be greater than 0"),
    ({"name": "si", "c": -1}, "interventions[0].c: Input should be greater than or equal to 0"),
    ({"name": "replay", "buffer_size": 0}, "interventions[0].buffer_size: Input should be greater than or equal to 1"),
    ({"name": "power-law-rehearsal", "exponent": -1}, "interventions[0].exponent: Input should be greater than"),
    ({"name": "lwf", "temperature": 0}, "interventions[0].temperature: Input should be greater than 0"),
    ({"name": "agem", "reference_batch": 0}, "interventions[0].reference_batch: Input should be greater than"),
    ({"name": "joint", "cumulative": 3}, "interventions[0].cumulative: Input should be a valid boolean"),
    ({"name": "agem", "memory": 3}, "interventions[0].memory: unknown key; valid: memory_per_experience"),
])
def test_bad_parameters_are_refused_in_one_line(strategy, message):
    with pytest.raises(SpecError) as error:
        experiment(PERMUTED, [strategy])
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


@pytest.mark.parametrize("task,strategy,message", [
    (gaussians(4, 8, 96, 48), {"name": "ewc"}, "interventions[1]: ewc applies to streams of experiences"),
    (gaussians(4, 8, 96, 48), {"name": "joint"}, "interventions[1]: joint applies to streams of experiences"),
    (PERMUTED, {"name": "agem", "memory_per_experience": 97},
     "interventions[1].memory_per_experience: 97 exceeds experience 0's 96 training examples"),
])
def test_what_only_a_stream_allows_is_refused_before_training(task, strategy, message):
    with pytest.raises(SpecError) as error:
        Trainer(experiment(task, [{"name": "grokfast"}, strategy]))
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


def test_replay_works_on_any_task():
    trainer = trained_to(experiment(gaussians(4, 8, 96, 48), [{"name": "replay", "buffer_size": 10,
                                                                "replay_batch": 4}], steps=3), 3)
    assert trainer.interventions[0].reservoir.filled == 10
