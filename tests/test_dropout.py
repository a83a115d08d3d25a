"""Dropout at a site on a schedule, and multi-sample dropout
(interventions/dropout.py): the schedule against the reference's
drop_scheduler written out, an update against a hand computation with the
same masks, probes without dropout, ensembles against single runs, exact
resume and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers import assert_resumes_exactly
from learnscope.errors import SpecError
from learnscope.interventions.dropout import Dropout
from learnscope.models.base import Sites
from learnscope.seeding import generator
from learnscope.spec import Experiment
from learnscope.train.trainer import Trainer

TASK = {"name": "gaussian-mixture", "classes": 3, "dim": 6, "samples": 64, "test_samples": 16}
SITE = "hidden.0"


def experiment(interventions=(), seeds=(0, 1), steps: int = 6, batch_size: int | None = 16) -> Experiment:
    return Experiment.model_validate({
        "task": TASK, "model": {"name": "mlp", "hidden": [12]}, "seeds": list(seeds),
        "probes": [{"name": "loss", "splits": ["train", "test"]}], "interventions": list(interventions),
        "recipe": {"optimizer": "sgd", "lr": 0.2, "steps": steps, "probe_every": steps, "probe_log_points": 0,
                   "batch_size": batch_size}})


def dropout(**fields) -> dict:
    return {"name": "dropout", "site": SITE, "p": 0.5, **fields}


@pytest.mark.parametrize("fields", [{"mode": "standard"}, {"mode": "early", "cutoff": 7},
                                    {"mode": "early", "cutoff": 7, "schedule": "linear"},
                                    {"mode": "late", "cutoff": 7}])
def test_the_schedule_is_the_reference_drop_scheduler(fields):
    epochs, p, cutoff = 20, 0.3, fields.get("cutoff", 0)
    reference = {  # "Dropout Reduces Underfitting", drop_scheduler.py, one iteration an epoch
        "standard": np.full(epochs, p),
        "early": np.concatenate([np.full(cutoff, p) if fields.get("schedule", "constant") == "constant"
                                 else np.linspace(p, 0, cutoff), np.zeros(epochs - cutoff)]),
        "late": np.concatenate([np.zeros(cutoff), np.full(epochs - cutoff, p)]),
    }[fields["mode"]]
    spec = Dropout(site=SITE, p=p, **fields)
    np.testing.assert_allclose([spec.rate(t) for t in range(epochs)], reference, atol=1e-15)


def keep_masks(seed: int, step: int, examples: int, units: int, p: float) -> torch.Tensor:
    """The masks the module's docstring promises: uniform draws from (seed, "dropout", site, step), kept if >= p."""
    return torch.rand((examples, units), generator=generator(seed, "dropout", SITE, step)) >= p


@pytest.mark.parametrize("samples", [1, 3])
def test_an_update_is_the_mean_over_its_samples_of_the_masked_losses(samples):
    trainer = Trainer(experiment([dropout(samples=samples)]))
    plain = Trainer(experiment())
    x, y = plain.batch()
    p = 0.5
    for member, seed in enumerate(trainer.seeds):
        masks = keep_masks(seed, 0, samples * x.shape[1], 12, p).view(samples, x.shape[1], 12)
        net = plain.model
        params = [q[member : member + 1].detach().clone().requires_grad_(True) for q in plain.params]
        names = [n for n, _ in plain.model.named_parameters()]
        total = 0.0
        for mask in masks:
            sites = Sites(edits={SITE: lambda h, m=mask: h * m.float() / (1 - p)})
            out = torch.func.functional_call(net, dict(zip(names, params)), (x[member : member + 1], sites))
            total = total + torch.nn.functional.cross_entropy(out[0], y[member]) / samples
        grads = torch.autograd.grad(total, params)
        expected = [q[member] - 0.2 * g[0] for q, g in zip(plain.params, grads)]
        if member == 0:
            trainer.train_step()
        for got, want in zip(trainer.params, expected):
            torch.testing.assert_close(got[member], want)


def test_probes_measure_the_model_without_dropout():
    with_dropout, without = Trainer(experiment([dropout(p=0.9)])), Trainer(experiment())
    for name, metric in with_dropout.measure().items():
        torch.testing.assert_close(metric, without.measure()[name], rtol=0, atol=0)


def test_no_unit_is_dropped_after_early_dropout_ends_nor_before_late_dropout_begins():
    early = Trainer(experiment([dropout(mode="early", cutoff=2)]))
    late = Trainer(experiment([dropout(mode="late", cutoff=4)], steps=4 + 1))
    plain = Trainer(experiment())
    for trainer in (early, late, plain):
        trainer.train_step()
    assert not torch.equal(early.params[0], plain.params[0])
    torch.testing.assert_close(late.params[0], plain.params[0], rtol=0, atol=0)
    early.train_step(), plain.train_step()
    state, meta = plain.state()
    early_state, _ = early.state()
    plain_from_early = Trainer(experiment())
    plain_from_early.load_state(early_state, meta)
    early.train_step(), plain_from_early.train_step()  # step 2: past the cutoff, both plain updates
    torch.testing.assert_close(early.params[0], plain_from_early.params[0], rtol=0, atol=0)


def test_seed_k_of_an_ensemble_drops_as_its_single_run():
    together = Trainer(experiment([dropout(samples=2)], seeds=(0, 1, 2)))
    alone = Trainer(experiment([dropout(samples=2)], seeds=(1,)))
    together.run(), alone.run()
    for p, q in zip(together.params, alone.params):
        torch.testing.assert_close(p[1:2], q)


def test_a_resumed_run_continues_exactly():
    spec = experiment([dropout(mode="early", schedule="linear", cutoff=4, samples=2)], steps=8)
    assert_resumes_exactly(lambda: Trainer(spec))


@pytest.mark.parametrize("fields, message", [
    ({"site": "hidden.7"}, r"interventions\[0\]\.site: unknown site 'hidden.7'; .*hidden\.0"),
    ({"mode": "late", "cutoff": 3, "schedule": "linear"}, r"schedule linear is early dropout's"),
    ({"mode": "early"}, r"mode early needs a cutoff step of at least 1"),
    ({"mode": "late", "cutoff": 6}, r"interventions\[0\]\.cutoff: step 6 is past the run's last, 5"),
])
def test_bad_dropout_specs_are_one_line(fields, message):
    with pytest.raises((SpecError, ValueError), match=message):
        Trainer(experiment([dropout(**fields)]))


# ---------------------------------------------------------------- nested dropout and truncation


def test_nested_dropout_keeps_a_geometric_number_of_leading_units():
    from scipy.stats import geom

    trainer = Trainer(experiment([{"name": "nested-dropout", "site": SITE, "rho": 0.2}], seeds=(0,)))
    state = trainer.interventions[0]
    state._batch = 20_000  # draws of b for many examples at one step
    b = state.kept(trainer, 0)[0].numpy()
    for value in (1, 2, 3, 5, 8):
        assert abs((b == value).mean() - geom.pmf(value, 0.2)) < 0.01
    assert abs(b.mean() - 1 / 0.2) < 0.1


def test_a_nested_dropout_update_zeroes_the_trailing_units_without_rescaling():
    trainer = Trainer(experiment([{"name": "nested-dropout", "site": SITE, "rho": 0.3}]))
    plain = Trainer(experiment())
    x, y = plain.batch()
    trainer.train_step()
    kept = trainer.interventions[0].kept(trainer, 0)
    names = [n for n, _ in plain.model.named_parameters()]
    for member in range(2):
        mask = (torch.arange(12) < kept[member].unsqueeze(1)).float()  # [batch, units]
        params = [q[member : member + 1].detach().clone().requires_grad_(True) for q in plain.params]
        sites = Sites(edits={SITE: lambda h, m=mask: h * m})
        out = torch.func.functional_call(plain.model, dict(zip(names, params)), (x[member : member + 1], sites))
        grads = torch.autograd.grad(torch.nn.functional.cross_entropy(out[0], y[member]), params)
        for got, q, g in zip(trainer.params, plain.params, grads):
            torch.testing.assert_close(got[member], q[member] - 0.2 * g[0])


def test_truncation_is_the_accuracy_with_the_trailing_units_zeroed():
    spec = experiment().to_dict()
    spec["probes"] = [{"name": "truncation", "site": SITE, "keep": [12, 1, 5], "splits": ["test"]},
                      {"name": "accuracy", "splits": ["test"]}]
    trainer = Trainer(Experiment.model_validate(spec))
    trainer.run()
    metrics = trainer.measure()
    x, y = trainer.data.splits["test"]
    for k in (1, 5):
        with torch.no_grad():
            out = trainer.model(x, Sites(edits={SITE: lambda h, k=k: h * (torch.arange(12) < k).float()}))
        torch.testing.assert_close(metrics[f"truncation/test/k{k}"], (out.argmax(-1) == y).float().mean(1))
    torch.testing.assert_close(metrics["truncation/test/k12"], metrics["accuracy/test"])


def test_truncation_past_the_width_is_one_line(tmp_path, capsys):
    from helpers import cli

    spec = experiment().to_dict()
    spec["probes"] = [{"name": "truncation", "site": SITE, "keep": [4, 13]}]
    path = tmp_path / "spec.json"
    path.write_text(__import__("json").dumps(spec))
    code, _, err = cli(capsys, "run", path, "--store", tmp_path / "store")
    assert code == 2 and "13 units kept, but site 'hidden.0' has 12; valid: 1 to 12" in err
    assert len(err.strip().splitlines()) == 1
