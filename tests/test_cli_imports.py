"""Nothing loaded that a command does not use: `--help`, `--version`, `list`
and `runs` import no torch; training imports no matplotlib, pandas or scipy
before the summary and the report. (`show` still does: the summary validates
the stored spec, to tell a stream's continual measures, and the task classes
import torch.) Each command runs as the
user runs it (`python -m learnscope`, the real entry point) under
`-X importtime`, whose report on stderr names every module the process
imported; nothing is switched by an environment variable."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

import learnscope as ls
from learnscope import registry

pytestmark = pytest.mark.xdist_group("cli_imports")

HEAVY = ("torch", "pandas", "matplotlib", "scipy", "sklearn")


def imported(*args: str, cwd=None) -> tuple[set[str], subprocess.CompletedProcess]:
    """Top-level packages `python -m learnscope ARGS` imported, and the process."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "learnscope", *args], capture_output=True,
                          text=True, timeout=300, cwd=cwd)
    names = set()
    for line in done.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            names.add(name.split(".")[0])
    return names, done


@pytest.fixture(scope="module")
def store_with_run(tmp_path_factory):
    directory = tmp_path_factory.mktemp("imports")
    spec = {"task": {"name": "gaussian-mixture", "classes": 3, "dim": 4, "samples": 64},
            "model": {"name": "mlp", "hidden": [8]},
            "recipe": {"optimizer": "sgd", "lr": 0.1, "steps": 3, "batch_size": 8, "probe_every": 1},
            "probes": ["accuracy", "loss"], "seeds": 2}
    ls.run_experiment(ls.Experiment.model_validate(spec), str(directory / "store"), "tiny", progress=False)
    return directory


@pytest.mark.parametrize("args", [["--help"], ["run", "--help"], ["list"], ["--version"]])
def test_commands_that_train_nothing_import_no_torch(args):
    names, done = imported(*args)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "learnscope" in names
    assert not names & set(HEAVY), f"learnscope {' '.join(args)} imported {sorted(names & set(HEAVY))}"


def test_listing_runs_imports_no_torch(store_with_run):
    names, done = imported("runs", "--store", str(store_with_run / "store"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "tiny" in done.stdout
    assert "torch" not in names


def test_list_reads_the_catalog_as_importing_it_would():
    """The listing read from the catalog's files (no import) is the registry's."""
    read = registry._read_catalog()
    assert read is not None, "every built-in phenomenon sets summary and source as literals"
    assert read == [(name, cls.summary, cls.source) for name, cls in registry.phenomena.items()]


def test_list_with_a_plugin_asks_the_registry(tmp_path):
    plugin = tmp_path / "extra_phenomenon.py"
    plugin.write_text(
        "from learnscope import registry\n"
        "from learnscope.catalog.grokking import Grokking\n"
        "@registry.phenomena.register('extra-grokking')\n"
        "class Extra(Grokking):\n"
        "    summary = 'a plugin phenomenon'\n")
    names, done = imported("list", "--plugin", str(plugin))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "extra-grokking" in done.stdout and "a plugin phenomenon" in done.stdout


def test_training_imports_no_report_or_statistics_libraries(tmp_path):
    """Up to the last step no module of learnscope imports pandas, scipy or
    matplotlib (the summary and the report load them after), and nothing
    imports torch._dynamo (torch.optim's first construction, a
    TorchDispatchMode's first dispatch) or scikit-learn (which torch._dynamo
    loads). A finder in the process records which file's import statement
    first loaded each."""
    spec = tmp_path / "tiny.yaml"
    spec.write_text(yaml.safe_dump({"task": {"name": "gaussian-mixture", "classes": 3, "dim": 4, "samples": 64},
                                    "model": {"name": "mlp", "hidden": [8]},
                                    "recipe": {"optimizer": "adamw", "steps": 3, "batch_size": 8},
                                    "probes": ["accuracy"], "seeds": 2}))
    code = ("import sys, traceback\n"
            "first = {}\n"
            "class Finder:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name in ('pandas', 'scipy', 'matplotlib', 'sklearn', 'torch._dynamo') and name not in first:\n"
            "            frames = [f.filename for f in traceback.extract_stack()[:-1] if 'importlib' not in f.filename]\n"
            "            first[name] = frames[-1]\n"
            "sys.meta_path.insert(0, Finder())\n"
            "import learnscope.runner as runner\n"
            "from learnscope.spec import load_experiment\n"
            f"runner.run_experiment(load_experiment({str(spec)!r}), {str(tmp_path / 's')!r}, 'tiny', progress=False)\n"
            "print(sorted(f'{name} by {where}' for name, where in first.items()\n"
            "             if 'learnscope' in where or name in ('torch._dynamo', 'sklearn')))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_show_draws_nothing(store_with_run):
    """show prints numbers: the report's matplotlib stays unloaded."""
    names, done = imported("show", "latest", "--store", str(store_with_run / "store"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "tiny" in done.stdout
    assert "matplotlib" not in names
