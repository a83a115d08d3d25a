"""`learnscope.watching` (ls.watch): probes in the user's own training loop. The README's
example runs as written; its run reads back through the command line; the
probes' values equal independent computations on the user's modules; the
run's status is honest; bad input is one error and records nothing."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import learnscope as ls
from helpers import cli
from learnscope.errors import LearnscopeError
from learnscope.models.base import Sites
from learnscope.store.sqlite import Store
from learnscope.watching import WatchedEnsemble

README = Path(__file__).resolve().parents[1] / "README.md"
EPS = 1e-7  # effective_rank's smoothing


def readme_watch_example() -> str:
    """The README's indented code block that calls ls.watch, dedented."""
    lines = README.read_text().splitlines()
    blocks, current = [], []
    for line in lines:
        if line.startswith("    ") or (not line.strip() and current):
            current.append(line)
            continue
        if current:
            blocks.append("\n".join(current))
            current = []
    blocks.append("\n".join(current))
    found = [textwrap.dedent(b) for b in blocks if "ls.watch(" in b]
    assert len(found) == 1, "the README should hold one ls.watch example"
    return found[0]


def rankme(f: np.ndarray) -> float:
    sigma = np.linalg.svd(f, compute_uv=False)
    p = sigma / sigma.sum() + EPS
    return float(np.exp(-np.sum(p * np.log(p))))


@pytest.fixture(scope="module")
def readme_run(tmp_path_factory):
    """The README example, run as written in a fresh directory."""
    root = tmp_path_factory.mktemp("readme")
    namespace: dict = {"__name__": "readme_example"}
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        patch.delenv("LEARNSCOPE_STORE", raising=False)
        exec(compile(readme_watch_example(), "README.md (the ls.watch example)", "exec"), namespace)
    return root, namespace


def test_readme_example_is_a_finished_run_in_the_store(readme_run, capsys):
    root, ns = readme_run
    store = root / "learnscope-runs"
    run_id = ns["w"].run_id
    code, out, _ = cli(capsys, "runs", "--store", store)
    assert code == 0
    row = next(line for line in out.splitlines() if run_id in line)
    assert "watch" in row and "finished" in row and "my-mlp" in row
    code, out, _ = cli(capsys, "show", run_id, "--store", store)
    assert code == 0 and "status finished" in out
    for metric in ("accuracy/test", "accuracy/train", "loss/test", "effective_rank/fc1", "nc1", "nc4"):
        assert metric in out
    steps = sorted(set(Store(store).metrics(run_id)["step"]))
    assert steps == list(range(50, 301, 50))


def test_readme_accuracy_equals_an_independent_computation(readme_run, capsys):
    root, ns = readme_run
    code, out, _ = cli(capsys, "show", ns["w"].run_id, "--store", root / "learnscope-runs", "--json")
    assert code == 0
    summary = {row["metric"]: row["values"] for row in json.loads(out.strip().splitlines()[-1])["summary"]}
    x_test, y_test = ns["test"]
    x_train, _ = ns["train"]
    with torch.no_grad():
        accuracy = [(model(x_test).argmax(1) == y_test).double().mean().item() for model in ns["models"]]
        loss = [nn.functional.cross_entropy(model(x_test), y_test).item() for model in ns["models"]]
        ranks = [rankme(model.fc1(x_test).double().numpy()) for model in ns["models"]]
    assert summary["accuracy/test"] == accuracy
    np.testing.assert_allclose(summary["loss/test"], loss, rtol=1e-6)
    np.testing.assert_allclose(summary["effective_rank/fc1"], ranks, rtol=1e-6)
    assert min(accuracy) > 0.5  # it trained: chance is 0.25


def test_readme_run_reports_and_exports(readme_run, capsys, tmp_path):
    root, ns = readme_run
    store, run_id = root / "learnscope-runs", ns["w"].run_id
    code, out, err = cli(capsys, "report", run_id, "--store", store, "-o", tmp_path / "report")
    assert code == 0, err
    assert (tmp_path / "report" / "index.html").is_file() and list((tmp_path / "report").glob("*.png"))
    code, out, err = cli(capsys, "export", run_id, "--store", store, "-o", tmp_path / "m.csv")
    assert code == 0, err
    assert re.search(r"wrote \d+ rows", out)
    code, _, err = cli(capsys, "resume", run_id, "--store", store)
    assert code == 2 and err.count("\n") == 1


def test_ls_watch_is_the_function_even_after_its_module_is_imported(tmp_path):
    import learnscope.watching as module

    x, y = toy()
    for call in (ls.watch, module.watch):
        with call(models_(), {"train": (x, y)}, store=tmp_path) as w:
            assert isinstance(w, module.Watch)


# ---------------------------------------------------------------- the loop, the status


class Small(nn.Module):
    def __init__(self, d=6, h=8, c=3, dropout=0.0):
        super().__init__()
        self.fc1 = nn.Linear(d, h)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(h, c)

    def forward(self, x):
        return self.head(self.drop(torch.relu(self.fc1(x))))


def toy(n=40, d=6, c=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g), torch.randint(0, c, (n,), generator=g)


def models_(k=2, **kw):
    torch.manual_seed(0)
    return [Small(**kw) for _ in range(k)]


def test_probing_changes_no_mode_parameter_or_gradient(tmp_path):
    models = models_(dropout=0.5)
    models[0].drop.eval()  # a submodule the user put in eval mode stays there
    x, y = toy()
    for m in models:
        nn.functional.cross_entropy(m(x), y).backward()
    before = [[p.detach().clone() for p in m.parameters()] + [p.grad.clone() for p in m.parameters()] for m in models]
    with ls.watch(models, {"train": (x, y)}, store=tmp_path, every=1) as w:
        metrics = w.step(1)
    assert set(metrics) == {"loss/train", "accuracy/train"} and len(metrics["loss/train"]) == 2
    assert [m.training for m in models] == [True, True]
    assert [m.drop.training for m in models] == [False, True]
    after = [[p.detach() for p in m.parameters()] + [p.grad for p in m.parameters()] for m in models]
    assert all(torch.equal(a, b) for ma, mb in zip(before, after) for a, b in zip(ma, mb))


def test_a_failure_inside_the_block_marks_the_run_failed(tmp_path):
    x, y = toy()
    with pytest.raises(ValueError, match="boom"):
        with ls.watch(models_(), {"train": (x, y)}, store=tmp_path, run_id="f", every=1) as w:
            w.step(1)
            raise ValueError("boom")
    record = Store(tmp_path).get_run("f")
    assert record.status == "failed" and record.reason == "ValueError: boom" and record.kind == "watch"
    with pytest.raises(KeyboardInterrupt):
        with ls.watch(models_(), {"train": (x, y)}, store=tmp_path, run_id="i", every=1):
            raise KeyboardInterrupt
    assert Store(tmp_path).get_run("i").status == "interrupted"


def test_the_last_step_is_probed_at_the_end(tmp_path):
    x, y = toy()
    with ls.watch(models_(), {"train": (x, y)}, probes=["weight_norm"], store=tmp_path, run_id="r", every=4) as w:
        for step in range(1, 11):
            w.step(step)
        with pytest.raises(LearnscopeError, match="steps must increase"):
            w.step(10)
    assert sorted(set(Store(tmp_path).metrics("r")["step"])) == [4, 8, 10]
    assert Store(tmp_path).get_run("r").status == "finished"


def test_regression_one_model_and_per_model_data(tmp_path):
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 2))
    x = torch.randn(30, 5)
    y = torch.randn(30, 2)
    with ls.watch(net, {"train": (x.numpy(), y.numpy())}, probes=["loss", "weight_norm"], store=tmp_path,
                  run_id="reg") as w:
        pass
    assert w.info.loss == "mse" and w.info.output_dim == 2
    final = w.run.final().set_index("name")["value"]
    with torch.no_grad():
        assert final["loss/train"] == pytest.approx(((net(x) - y) ** 2).mean().item(), rel=1e-6)
        norm = torch.cat([p.double().flatten() for p in net.parameters()]).norm().item()
    assert final["weight_norm"] == pytest.approx(norm, rel=1e-12)

    models = models_(2)
    pairs = [toy(seed=0), toy(seed=1)]
    with ls.watch(models, {"train": pairs}, probes=["accuracy"], store=tmp_path, run_id="per", seeds=[7, 9]) as w:
        pass
    got = w.run.final().sort_values("seed")
    assert list(got["seed"]) == [7, 9]
    with torch.no_grad():
        want = [(m(px).argmax(1) == py).double().mean().item() for m, (px, py) in zip(models, pairs)]
    assert list(got["value"]) == want


def test_sites_are_read_and_edited_through_hooks():
    models = models_(3)
    ensemble = WatchedEnsemble(models, output_dim=3)
    assert {"fc1", "drop", "head", "penultimate", "logits"} <= set(ensemble.site_names())
    x = torch.randn(3, 5, 6)
    sites = Sites(read={"fc1", "penultimate", "logits"})
    with torch.no_grad():
        out = ensemble(x, sites)
        for k, m in enumerate(models):
            assert torch.equal(sites.acts["fc1"][k], m.fc1(x[k]))
            assert torch.equal(sites.acts["penultimate"][k], torch.relu(m.fc1(x[k])))
            assert torch.equal(out[k], m(x[k])) and torch.equal(sites.acts["logits"][k], out[k])
        # an edit sees the seed axis first: scale seed k's penultimate features by k
        scale = torch.arange(3.0).view(3, 1, 1)
        edited = ensemble(x, Sites(edits={"penultimate": lambda h: h * scale}))
        for k, m in enumerate(models):
            assert torch.allclose(edited[k], m.head(torch.relu(m.fc1(x[k])) * k))
    assert torch.equal(ensemble.readout(), torch.stack([m.head.weight for m in models]))


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("case", ["architecture", "labels", "probe", "accuracy on regression", "site", "data",
                                  "every", "same module"])
def test_bad_input_is_one_error_and_records_nothing(case, tmp_path):
    x, y = toy()
    models, data, kw = models_(), {"train": (x, y)}, {}
    if case == "architecture":
        models = [Small(), Small(h=9)]
    elif case == "labels":
        data = {"train": (x, y + 5)}
    elif case == "probe":
        kw = {"probes": ["acuracy"]}
    elif case == "accuracy on regression":
        data, kw = {"train": (x, torch.randn(40, 3))}, {"probes": ["accuracy"]}
    elif case == "site":
        kw = {"probes": [{"name": "effective_rank", "site": "fc9"}]}
    elif case == "data":
        data = {"train": (x, y[:10])}
    elif case == "every":
        kw = {"every": 0}
    elif case == "same module":
        models = [models[0], models[0]]
    store = tmp_path / "store"
    with pytest.raises(LearnscopeError) as info:
        ls.watch(models, data, store=store, **kw)
    assert "\n" not in str(info.value) and len(str(info.value)) > 10
    assert not store.exists()
