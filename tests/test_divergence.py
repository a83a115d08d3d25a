"""One seed diverging is an event, not a crash: a fault injected into one
member makes its loss non-finite; the event names seed and step, the member
is frozen where it was, the other members' metrics are exactly those of a
run without it, and statistics and signatures leave it out."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from pydantic import Field

from learnscope import registry
from learnscope.cli import main
from learnscope.runner import check_signature, run_experiment, run_phenomenon
from learnscope.spec import Experiment
from learnscope.store.sqlite import Store
from learnscope.train.hooks import Intervention, InterventionState
from learnscope.train.trainer import Trainer

POISON_STEP = 20


@registry.interventions.register("test-overflow-member")
class OverflowMember(Intervention):
    """Test fault: sets one member's first-layer weights to 3e38 (finite, but
    the sums of their products overflow) at the end of the update that
    reaches `at_step`."""

    member: int = Field(ge=0)
    at_step: int = Field(ge=1)

    def build(self, trainer):
        return _Overflow(self)


class _Overflow(InterventionState):
    def __init__(self, spec: OverflowMember):
        self.spec = spec

    def after_step(self, trainer) -> None:
        if trainer.step + 1 == self.spec.at_step:
            with torch.no_grad():
                trainer.params[0][self.spec.member] = 3e38


def spec(seeds, poison: bool) -> dict:
    return {
        "task": {"name": "gaussian-mixture", "classes": 3, "dim": 6, "samples": 96, "test_samples": 32},
        "model": {"name": "mlp", "hidden": [16]},
        "recipe": {"optimizer": "adamw", "lr": 0.01, "steps": 40, "batch_size": 16, "probe_every": 5,
                   "probe_log_points": 0},
        "interventions": [{"name": "test-overflow-member", "member": 1, "at_step": POISON_STEP}] if poison else [],
        "probes": ["accuracy", "loss", "weight_norm"],
        "seeds": seeds,
    }


def test_diverging_member_is_frozen_and_harms_no_other():
    trainer = Trainer(Experiment.model_validate(spec([0, 1, 2], poison=True)))
    events, frozen_at = [], {}

    def on_diverge(seed, step):
        events.append((seed, step))
        frozen_at.update({i: p[1].detach().clone() for i, p in enumerate(trainer.params)})

    trainer.on_diverge = on_diverge
    trainer.run()
    assert events == [(1, POISON_STEP)]
    assert trainer.diverged.tolist() == [False, True, False]
    # frozen exactly where it was when found, and still finite: no NaN update reached it
    for i, p in enumerate(trainer.params):
        assert torch.equal(p[1], frozen_at[i])
        assert torch.isfinite(p[1]).all()
    # the others trained on, finite
    assert all(torch.isfinite(p[[0, 2]]).all() for p in trainer.params)


def metric_rows(run, seeds) -> list[tuple]:
    frame = run.metrics
    frame = frame[frame["seed"].isin(seeds)]
    return sorted(zip(frame["seed"], frame["step"], frame["name"], frame["value"]))


def test_other_seeds_match_a_run_without_the_diverging_one(tmp_path, capsys):
    store = Store(tmp_path / "store")
    poisoned = run_experiment(Experiment.model_validate(spec([0, 1, 2], poison=True)), store)
    clean = run_experiment(Experiment.model_validate(spec([0, 1, 2], poison=False)), store)
    without = run_experiment(Experiment.model_validate(spec([0, 2], poison=False)), store)
    assert poisoned.status == clean.status == without.status == "finished"
    assert store.diverged(poisoned.id) == {1: POISON_STEP} and store.diverged(clean.id) == {}
    assert [(e["seed"], e["step"]) for e in store.events(poisoned.id, "diverged")] == [(1, POISON_STEP)]
    rows = metric_rows(poisoned, [0, 2])
    assert len(rows) == 2 * 9 * 5
    assert rows == metric_rows(clean, [0, 2])  # identical, value for value
    # and, as for any ensemble, equal to the seeds run without their mate up to float reassociation
    np.testing.assert_allclose([r[3] for r in rows], [r[3] for r in metric_rows(without, [0, 2])], rtol=1e-5)

    # statistics leave the frozen seed out
    summary = poisoned.summary()
    assert set(summary["n"]) == {2}
    assert all(len(v) == 2 for v in summary["values"])
    assert main(["show", poisoned.id, "--store", str(store.dir)]) == 0
    out = capsys.readouterr().out
    assert f"diverged seed 1 at step {POISON_STEP}" in out


@pytest.mark.slow
def test_signature_leaves_out_a_seed_diverged_in_any_arm(tmp_path):
    store = Store(tmp_path / "store")
    run = run_phenomenon("grokking", quick=True, seeds=3, store=store,
                         overrides=["recipe.steps=60", "recipe.probe_log_points=0", "recipe.probe_every=10"])
    control = next(c for c in store.children(run.id) if c.arm == "no-weight-decay")
    store.add_event(control.id, "diverged", {"reason": "test"}, seed=1, step=30)
    verdict = check_signature(store, run.id)
    assert verdict.seeds == [0, 2]
    assert all(len(values) == 2 for values in verdict.measures.values())
    # and when every seed diverged there is nothing to pass
    for seed in (0, 2):
        store.add_event(control.id, "diverged", {"reason": "test"}, seed=seed, step=30)
    verdict = check_signature(store, run.id)
    assert not verdict.ok and "every seed diverged in some arm" in verdict.line("grokking")


def test_json_output_names_the_diverged_seeds(tmp_path, capsys):
    spec_file = tmp_path / "poison.json"
    spec_file.write_text(json.dumps(spec([0, 1, 2], poison=True)))
    code = main(["run", str(spec_file), "--store", str(tmp_path / "store"), "--no-report", "--json"])
    payload = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0 and payload["status"] == "finished"
    assert payload["diverged"] == {"": {"1": POISON_STEP}}
    assert np.isfinite([payload["final"]["loss/train"][s] for s in ("0", "2")]).all()
