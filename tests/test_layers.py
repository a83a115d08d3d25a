"""The package's layers import downward only, and every module imports
alone, first, in a fresh interpreter, in any order.

The layers, bottom up (design.md): what a module may import is its own
layer and those below. Every import statement counts, at module level or
inside a function, so no cycle hides in a deferred import.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "learnscope"

LAYERS: list[tuple[str, ...]] = [
    ("errors", "faults", "progress", "provenance", "seeding", "stats", "sensitivity", "version", "stacked_optim",
     "optimizers", "registry"),
    ("spec",),
    ("tasks", "losses"),
    ("models",),
    ("probes",),
    ("train",),
    ("interventions",),
    ("store",),
    ("results",),
    ("catalog", "continual"),
    ("runs", "runner", "compare"),
    ("report",),
    ("sweep",),
    ("cli", "watching", "__main__", ""),  # "": the package itself, its public names
]


def module_names() -> list[str]:
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


MODULES = module_names()


def layer_of(module: str) -> int:
    head = module.split(".")[1] if "." in module else ""
    for index, members in enumerate(LAYERS):
        if head in members:
            return index
    raise AssertionError(f"module {module} is in no layer: add it to LAYERS")


def imports_of(module: str) -> set[str]:
    """The package's modules `module` imports, anywhere in its body."""
    path = PACKAGE.parent / (module.replace(".", "/") + ("/__init__.py" if (SRC / module.replace(".", "/")).is_dir()
                                                         else ".py"))
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            targets = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in MODULES else node.module
                       for a in node.names]
        else:
            continue
        found.update(t for t in targets if t.split(".")[0] == "learnscope")
    return found - {module}


def test_every_module_has_a_layer_and_imports_downward():
    wrong = []
    for module in MODULES:
        for target in sorted(imports_of(module)):
            if layer_of(target) > layer_of(module):
                wrong.append(f"{module} (layer {layer_of(module)}) imports {target} (layer {layer_of(target)})")
    assert not wrong, "\n".join(wrong)


def test_import_graph_has_no_cycle():
    graph = {m: imports_of(m) for m in MODULES}
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            raise AssertionError("import cycle: " + " -> ".join(path[path.index(module):] + [module]))
        if module in done:
            return
        for target in sorted(graph.get(module, ())):
            visit(target, path + [module])
        done.add(module)

    for module in MODULES:
        visit(module, [])


# Each module imported first, alone: the package's own modules are dropped from
# sys.modules before each (third-party ones stay loaded, for speed; they cannot
# hide a cycle of ours). Then every module again in several shuffled orders.
_IMPORT_ALONE = r"""
import importlib, json, random, sys, traceback
modules = json.loads(sys.argv[1])
failures = []
def fresh():
    for name in [n for n in sys.modules if n == "learnscope" or n.startswith("learnscope.")]:
        del sys.modules[name]
def attempt(name, order):
    try:
        importlib.import_module(name)
    except BaseException as exc:
        failures.append(f"{name} (after {order[-3:]}): {exc.__class__.__name__}: {exc}")
for name in modules:
    fresh()
    attempt(name, [])
for seed in range(3):
    fresh()
    order = list(modules)
    random.Random(seed).shuffle(order)
    for i, name in enumerate(order):
        attempt(name, order[:i])
print(json.dumps(failures))
"""


@pytest.mark.slow
def test_every_module_imports_alone_in_any_order():
    modules = [m for m in MODULES if m != "learnscope.__main__"]  # __main__ runs the CLI
    proc = subprocess.run([sys.executable, "-c", _IMPORT_ALONE, json.dumps(modules)], capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    failures = json.loads(proc.stdout.strip().splitlines()[-1])
    assert not failures, "\n".join(failures)
