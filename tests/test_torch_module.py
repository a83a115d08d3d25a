"""Any nn.Module as a seed ensemble (models.torch_module): a factory in a file
outside the package trains as an ensemble whose member k is the single run of
seed k; an MLP built by a factory, given the built-in mlp's initial weights,
trains to the built-in's metrics; its submodules are sites that probes read
and interventions edit; bad factories are refused in one line; resume from a
checkpoint is exact."""

from __future__ import annotations

import copy
import textwrap

import numpy as np
import pytest
import torch

from learnscope.errors import SpecError
from learnscope.models.base import Sites
from learnscope.spec import Experiment
from learnscope.store.checkpoints import read_checkpoint, write_checkpoint
from learnscope.store.sqlite import Store
from learnscope.train.passes import PassPlan
from learnscope.train.trainer import Trainer

FACTORIES = '''
import torch
from torch import nn


def mlp(width=16, depth=2, info=None):
    widths = [info.input_shape[0], *[width] * depth]
    layers = []
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(widths[-1], info.output_dim))


class Scaled(nn.Module):
    """Output not an nn.Linear's: no penultimate site."""

    def __init__(self, d_in, classes):
        super().__init__()
        self.body = nn.Linear(d_in, classes)

    def forward(self, x):
        return 2 * self.body(x)


def scaled(info):
    return Scaled(info.input_shape[0], info.output_dim)


def dropout(info):
    return nn.Sequential(nn.Linear(info.input_shape[0], 8), nn.Dropout(0.5), nn.Linear(8, info.output_dim))


def batchnorm(info):
    return nn.Sequential(nn.Linear(info.input_shape[0], 8), nn.BatchNorm1d(8), nn.Linear(8, info.output_dim))


def random_buffer(info):
    net = mlp(info=info)
    net.register_buffer("projection", torch.randn(3))
    return net


def wrong_shape(info):
    return nn.Linear(info.input_shape[0], info.output_dim + 1)


def returns_list():
    return [1, 2]


def raises():
    raise ValueError("no luck")


NOT_CALLABLE = 3
'''

TASK = {"name": "gaussian-mixture", "classes": 4, "dim": 8, "samples": 192, "test_samples": 48}
RECIPE = {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "steps": 30, "batch_size": 32, "probe_every": 10,
          "probe_log_points": 0}
PROBES = ["accuracy", "loss", "weight_norm"]


@pytest.fixture(scope="module")
def factory_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("factories") / "nets.py"
    path.write_text(textwrap.dedent(FACTORIES))
    return path


def spec(factory_file, seeds, name="mlp", kwargs=None, **extra) -> dict:
    return {"task": TASK, "model": {"name": "torch-module", "factory": f"{factory_file}:{name}",
                                    "kwargs": kwargs if kwargs is not None else {"width": 16}},
            "recipe": RECIPE, "probes": PROBES, "seeds": seeds, **extra}


def train(raw: dict, prepare=None) -> tuple[Trainer, dict[int, dict[str, np.ndarray]]]:
    trainer = Trainer(Experiment.model_validate(copy.deepcopy(raw)))
    if prepare is not None:
        prepare(trainer)
    record: dict[int, dict[str, np.ndarray]] = {}
    trainer.run(on_probe=lambda step, m: record.__setitem__(step, {k: v.double().numpy().copy() for k, v in m.items()}))
    return trainer, record


def test_a_member_of_the_ensemble_is_the_single_run_of_its_seed(factory_file):
    ensemble, ens = train(spec(factory_file, [0, 1, 2, 3]))
    single, one = train(spec(factory_file, [2]))
    assert sorted(ens) == sorted(one) == [0, 10, 20, 30]
    for step in one:
        for name, value in one[step].items():
            np.testing.assert_allclose(ens[step][name][2], value[0], rtol=1e-5, atol=1e-9, err_msg=f"{step} {name}")
    for p_ens, p_one in zip(ensemble.params, single.params):
        torch.testing.assert_close(p_ens[2], p_one[0], rtol=1e-5, atol=1e-6)
    # the members differ, and the names are the member's own behind `net.`
    assert len(set(np.round(ens[0]["weight_norm"], 9))) == 4
    assert [n for n, _ in ensemble.model.named_parameters()] == [
        f"net.{i}.{kind}" for i in (0, 2, 4) for kind in ("weight", "bias")]


def test_trained_in_groups_of_seeds_a_member_is_still_its_single_run(factory_file):
    """Large passes run seeds in groups, through functional_call over the ensemble."""
    grouped = Trainer(Experiment.model_validate(spec(factory_file, [0, 1, 2, 3])))
    grouped.plan = PassPlan(seeds=2, examples=grouped.plan.examples)
    grouped.run()
    single, _ = train(spec(factory_file, [3]))
    for p_group, p_single in zip(grouped.params, single.params):
        torch.testing.assert_close(p_group[3], p_single[0], rtol=1e-5, atol=1e-6)


def test_initialization_is_the_modules_own_and_leaves_the_global_rng_alone(factory_file):
    state = torch.random.get_rng_state()
    a = Trainer(Experiment.model_validate(spec(factory_file, [5, 7])))
    b = Trainer(Experiment.model_validate(spec(factory_file, [7])))
    assert torch.equal(torch.random.get_rng_state(), state)
    for p_a, p_b in zip(a.params, b.params):
        assert torch.equal(p_a[1], p_b[0])
    # nn.Linear's default init: uniform within 1/sqrt(fan_in)
    first = a.model.net.get_submodule("0").weight
    assert first.abs().max() <= 1 / np.sqrt(8) and not torch.equal(first[0], first[1])


def test_a_torch_module_mlp_with_the_builtin_weights_trains_like_the_builtin(factory_file):
    seeds = [0, 1, 2]
    builtin_spec = {**spec(factory_file, seeds), "model": {"name": "mlp", "hidden": [16, 16]}}
    builtin, reference = train(builtin_spec)
    initial = Trainer(Experiment.model_validate(builtin_spec)).model

    def copy_builtin_weights(trainer):
        layers = [*initial.hidden, initial.head]
        with torch.no_grad():
            for i, layer in zip((0, 2, 4), layers):
                target = trainer.model.net.get_submodule(str(i))
                target.weight.copy_(layer.weight.transpose(1, 2))  # built-in [S, in, out], nn.Linear [out, in]
                target.bias.copy_(layer.bias.squeeze(1))
        trainer.initial_params = [p.detach().clone() for p in trainer.params]

    module, measured = train(spec(factory_file, seeds), prepare=copy_builtin_weights)
    for step, metrics in reference.items():
        for name, value in metrics.items():
            np.testing.assert_allclose(measured[step][name], value, rtol=1e-4, atol=1e-6, err_msg=f"{step} {name}")
    assert not np.allclose(reference[0]["loss/train"], reference[30]["loss/train"])  # it trained
    for layer, i in zip([*builtin.model.hidden, builtin.model.head], (0, 2, 4)):
        torch.testing.assert_close(module.model.net.get_submodule(str(i)).weight, layer.weight.transpose(1, 2),
                                   rtol=1e-4, atol=1e-5)


def test_submodules_are_sites_that_probes_read(factory_file):
    raw = spec(factory_file, [0, 1], probes=[{"name": "kernel_alignment", "site": "1"},
                                              {"name": "effective_rank", "site": "2"}, "neural_collapse"])
    trainer, record = train(raw)
    model = trainer.model
    assert model.site_names() == ["0", "1", "2", "3", "4", "penultimate", "logits"]
    for metrics in record.values():
        assert metrics["kernel_alignment/1"].shape == (2,) and np.all((0 < metrics["kernel_alignment/1"]) &
                                                                      (metrics["kernel_alignment/1"] <= 1))
        assert np.all(np.isfinite(metrics["effective_rank/2"])) and np.all(np.isfinite(metrics["nc1"]))
    # the activations are the members' own: [S, B, ...], the first ReLU's output
    x = trainer.data.splits["test"][0][:, :5]
    sites = Sites(read=["1", "penultimate"])
    with torch.no_grad():
        out = model(x, sites)
        first = model.net.get_submodule("0")
        hidden = torch.relu(x @ first.weight.transpose(1, 2) + first.bias.unsqueeze(1))
        head = model.net.get_submodule("4")
        torch.testing.assert_close(sites.acts["1"], hidden)
        torch.testing.assert_close(out, sites.acts["penultimate"] @ head.weight.transpose(1, 2) + head.bias.unsqueeze(1))
    assert model.readout().shape == (2, 4, 16)


def test_site_edits_change_the_pass_as_in_the_edited_network(factory_file):
    trainer = Trainer(Experiment.model_validate(spec(factory_file, [0, 1])))
    model, x = trainer.model, trainer.data.splits["train"][0][:, :6]
    plain = Sites(read=["1", "3"])
    model(x, plain)
    # zero the first hidden layer's units 0-3 of seed 1; read the next ReLU's output
    mask = torch.zeros(2, 1, 16, dtype=torch.bool)
    mask[1, :, :4] = True
    edited = Sites(read=["1", "3"], edits={"1": lambda v: v.masked_fill(mask, 0.0), "logits": lambda v: v + 1})
    out = model(x, edited)
    assert torch.equal(edited.acts["1"][1, :, :4], torch.zeros(6, 4))
    assert torch.equal(edited.acts["1"][0], plain.acts["1"][0])
    layer = model.net.get_submodule("2")
    expected = torch.relu(edited.acts["1"] @ layer.weight.transpose(1, 2) + layer.bias.unsqueeze(1))
    torch.testing.assert_close(edited.acts["3"], expected)
    torch.testing.assert_close(edited.acts["3"][0], plain.acts["3"][0])
    assert not torch.allclose(edited.acts["3"][1], plain.acts["3"][1])
    # the gradient is the edited network's: the zeroed units' incoming weights get none from seed 1
    out.sum().backward()
    grad = model.net.get_submodule("0").weight.grad
    assert torch.equal(grad[1, :4], torch.zeros(4, 8)) and grad[0, :4].abs().sum() > 0


def test_the_penultimate_site_needs_a_final_linear(factory_file):
    raw = spec(factory_file, [0], name="scaled", kwargs={}, probes=["neural_collapse"])
    with pytest.raises(SpecError) as err:
        Trainer(Experiment.model_validate(raw))
    assert str(err.value).startswith("probes[0].site: ") and "no penultimate site" in str(err.value)


@pytest.mark.parametrize("factory,expected", [
    ("nets.py", "model.factory: must be of the form 'package.module:function' or 'path/to/file.py:function'"),
    ("missing/nets.py:mlp", "model.factory: no such file: missing/nets.py"),
    ("no_such_package_xyz.nets:mlp", "model.factory: no module named 'no_such_package_xyz.nets'"),
    ("{file}:mpl", "has no 'mpl'; valid: "),
    ("{file}:NOT_CALLABLE", "is a int, not callable"),
    ("{file}:returns_list", "returned a list, not a torch.nn.Module"),
    ("{file}:raises", "failed: ValueError: no luck"),
    ("{file}:wrong_shape", "returns [2, 5] on 2 examples; the task needs [B, output_dim] = [2, 4]"),
    ("{file}:dropout", "draws random numbers in forward"),
    ("{file}:batchnorm", "changes buffer '1.running_mean'"),
    ("{file}:random_buffer", "buffer 'projection' of"),
], ids=["form", "no-file", "no-module", "no-function", "not-callable", "not-a-module", "raises", "shape",
        "dropout", "batchnorm", "random-buffer"])
def test_a_bad_factory_is_one_line_naming_model_factory(factory_file, factory, expected):
    raw = spec(factory_file, [0, 1], kwargs={})
    raw["model"]["factory"] = factory.format(file=factory_file)
    with pytest.raises(SpecError) as err:
        Trainer(Experiment.model_validate(raw))
    message = str(err.value)
    assert message.startswith("model.factory: ") and "\n" not in message and expected in message, message


def test_resume_from_a_checkpoint_is_exact(factory_file, tmp_path):
    raw = spec(factory_file, [0, 3])
    raw["recipe"] = {**RECIPE, "optimizer": "adamw", "lr": 0.01, "weight_decay": 0.1}
    whole, reference = train(raw)

    store = Store(tmp_path / "store")
    store.create_run("r", "test", Experiment.model_validate(raw).to_dict(), [0, 3])
    first = Trainer(Experiment.model_validate(raw))
    first.run(on_step=lambda step: step == 10 and write_checkpoint(store, "r", *first.state()))
    checkpoint = read_checkpoint(store, "r")
    assert checkpoint is not None and checkpoint.step == 10

    resumed = Trainer(Experiment.model_validate(raw))
    resumed.load_state(checkpoint.tensors, checkpoint.meta)
    record: dict[int, dict[str, np.ndarray]] = {}
    resumed.run(on_probe=lambda step, m: record.__setitem__(step, {k: v.double().numpy() for k, v in m.items()}))
    store.close()
    assert sorted(record) == [10, 20, 30]
    for step, metrics in record.items():
        for name, value in metrics.items():
            assert np.array_equal(value, reference[step][name]), (step, name)
    for p_whole, p_resumed in zip(whole.params, resumed.params):
        assert torch.equal(p_whole, p_resumed)


def test_the_stored_spec_reads_back(factory_file):
    experiment = Experiment.model_validate(spec(factory_file, [0, 1], kwargs={"width": 8, "depth": 1}))
    assert Experiment.model_validate(experiment.to_dict()) == experiment
