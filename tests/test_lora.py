"""LoRA adapters on the seed ensembles (models/lora.py), and a stream's
single experience as a training split: each against a hand computation."""

from __future__ import annotations

import pytest
import torch

from helpers import cli
from learnscope.errors import SpecError
from learnscope.spec import Experiment
from learnscope.train.trainer import Trainer

TASK = {"name": "gaussian-mixture", "classes": 3, "dim": 6, "samples": 64, "test_samples": 16}
MLP = {"name": "mlp", "hidden": [12, 10]}


def experiment(model: dict, seeds=(0, 1), steps: int = 6, task=TASK, **recipe) -> Experiment:
    return Experiment.model_validate({
        "task": task, "model": model, "seeds": list(seeds), "probes": ["accuracy"],
        "recipe": {"optimizer": "adam", "lr": 0.05, "steps": steps, "probe_every": steps, "probe_log_points": 0,
                   **recipe}})


def lora(rank: int = 2, **options) -> dict:
    return {"name": "lora", "base": MLP, "rank": rank, **options}


def train(trainer: Trainer) -> Trainer:
    for _ in range(trainer.recipe.steps):
        trainer.train_step()
    return trainer


def test_the_forward_pass_adds_the_scaled_low_rank_product():
    trainer = Trainer(experiment(lora(rank=3, alpha=1.5)))
    net = trainer.model
    with torch.no_grad():
        for name in ("hidden.0", "hidden.1", "head"):
            getattr_path(net, name).lora_b.normal_(generator=torch.Generator().manual_seed(1))
    x = trainer.data.splits["test"][0]
    h = x.flatten(2)
    for name in ("hidden.0", "hidden.1", "head"):
        layer = getattr_path(net, name)
        h = h @ layer.weight + layer.bias + 0.5 * (h @ layer.lora_a @ layer.lora_b)  # alpha / r = 1.5 / 3
        if name != "head":
            h = torch.relu(h)
    torch.testing.assert_close(net(x), h)


def getattr_path(module: torch.nn.Module, name: str):
    return dict(module.named_modules())[name]


def test_at_initialization_the_adapted_model_is_the_base_model():
    plain, adapted = Trainer(experiment(MLP)), Trainer(experiment(lora(rank=4)))
    x = plain.data.splits["test"][0]
    torch.testing.assert_close(adapted.model(x), plain.model(x), rtol=0, atol=0)
    a = adapted.model.hidden[0].lora_a
    assert (adapted.model.hidden[0].lora_b == 0).all() and a.abs().max() <= 6 ** -0.5 and a.std() > 0


def test_only_the_adapters_train_and_each_update_has_rank_at_most_r():
    trainer = Trainer(experiment(lora(rank=2, targets=["hidden.0"], train_full=["head"])))
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    train(trainer)
    changed = {n for n, p in trainer.model.named_parameters() if not torch.equal(p, before[n])}
    assert changed == {"hidden.0.lora_a", "hidden.0.lora_b", "head.weight", "head.bias"}
    layer = trainer.model.hidden[0]
    update = layer.lora_a.detach() @ layer.lora_b.detach()  # [S, in, out]
    assert [int(torch.linalg.matrix_rank(u)) for u in update] == [2, 2]


def test_seed_k_of_an_ensemble_equals_its_single_run():
    together = train(Trainer(experiment(lora(rank=3), seeds=(0, 1, 2))))
    alone = train(Trainer(experiment(lora(rank=3), seeds=(1,))))
    for (name, p), q in zip(together.model.named_parameters(), alone.model.parameters()):
        torch.testing.assert_close(p[1:2], q, msg=name)


def test_init_from_a_plain_run_loads_the_base_and_leaves_the_adapters_fresh():
    pretrained = train(Trainer(experiment(MLP)))
    tensors, meta = pretrained.state()
    tuned = Trainer(experiment(lora(rank=2)))
    fresh = {n: p.detach().clone() for n, p in tuned.model.named_parameters() if "lora" in n}
    tuned.initialize_from(tensors, meta["seeds"], "pretrained")
    x = tuned.data.splits["test"][0]
    torch.testing.assert_close(tuned.model(x), pretrained.model(x), rtol=0, atol=0)
    for name, p in tuned.model.named_parameters():
        if "lora" in name:
            assert torch.equal(p, fresh[name])
    assert [p.shape for p in tuned.initial_params] == [p.shape for p in tuned.params]  # the adapters' own start


def test_a_run_restored_from_its_state_continues_exactly():
    straight = Trainer(experiment(lora(rank=2), steps=8))
    train(straight)
    first = Trainer(experiment(lora(rank=2), steps=8))
    for _ in range(4):
        first.train_step()
    tensors, meta = first.state()
    resumed = Trainer(experiment(lora(rank=2), steps=8))
    resumed.load_state(tensors, meta)
    for _ in range(4):
        resumed.train_step()
    for p, q in zip(straight.model.parameters(), resumed.model.parameters()):
        assert torch.equal(p, q)


@pytest.mark.parametrize("model, message", [
    (lora(targets=["hidden.7"]), "model.targets: unknown linear layer 'hidden.7'"),
    (lora(train_full=["heads"]), "model.train_full: unknown module 'heads'"),
    (lora(targets=["head"], train_full=["head"]), "model.train_full: 'head' is adapted"),
    ({"name": "lora", "base": lora(), "rank": 2}, "model.base: is already a lora model"),
    ({"name": "lora", "base": {"name": "mlpp"}}, "model.base.name"),
])
def test_bad_adapter_specs_are_one_line(model, message):
    with pytest.raises(SpecError) as info:
        Trainer(experiment(model))
    assert message in str(info.value)


# ---------------------------------------------------------------- one experience of a stream

STREAM = {"name": "split-stream", "base": TASK | {"classes": 4}, "experiences": 2, "scenario": "task"}


def test_a_stream_trains_on_one_experience_alone():
    trainer = Trainer(experiment(MLP, task=STREAM, train_split="train/1", batch_size=8))
    assert not trainer.blocks
    labels = trainer.data.splits["train/1"][1]
    x, y = trainer.batch()
    assert set(y.unique().tolist()) <= set(labels.unique().tolist()) == {2, 3}
    rows = {tuple(r.tolist()) for r in trainer.data.splits["train/1"][0][0]}
    assert all(tuple(r.tolist()) in rows for r in x[0])


def test_an_unknown_stream_split_names_the_valid_ones(tmp_path, capsys):
    spec = tmp_path / "s.yaml"
    spec.write_text(experiment(MLP, task=STREAM, train_split="test/1").model_dump_json())
    code, _, err = cli(capsys, "run", spec, "--store", tmp_path / "store")
    assert code == 2 and "Traceback" not in err
    assert "recipe.train_split: a stream trains on its experiences' blocks (train) or on one experience alone; " \
           "valid: train, train/0, train/1" in err
