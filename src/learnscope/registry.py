"""Registries: a new component is one file and one decorator.

Each component kind (task, model, probe, intervention, phenomenon) has one
Registry. Components of the four spec kinds are pydantic models whose fields
are their parameters; `name` in a spec picks the class.

Nothing lists the components: a registry imports every module of its
package (`learnscope.tasks`, ...) the first time it is asked for a name, so
a new file there registers itself. Components outside the package register
with the same decorators and are loaded as plugins (learnscope.plugins):
`--plugin MODULE_OR_FILE`, `$LEARNSCOPE_PLUGINS`, or the `learnscope.plugins`
entry-point group of installed packages.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import pkgutil
import sys
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Generic, TypeVar

from learnscope.errors import LearnscopeError, SpecError, one_of

T = TypeVar("T")


def discover(package: str) -> None:
    """Import every module of a package (a component registers on import)."""
    root = importlib.import_module(package)
    for info in pkgutil.iter_modules(getattr(root, "__path__", []), prefix=f"{package}."):
        importlib.import_module(info.name)


class Registry(Generic[T]):
    """Named components of one kind. `package` holds the built-in ones,
    imported on first lookup; then the plugins named by the environment."""

    def __init__(self, kind: str, package: str | None = None):
        self.kind = kind
        self.package = package
        self._entries: dict[str, T] = {}
        self._loaded = False

    def register(self, name: str) -> Callable[[T], T]:
        def decorate(obj: T) -> T:
            known = self._entries.get(name)
            if known is not None and known is not obj:
                raise LearnscopeError(f"{self.kind} '{name}' is registered twice: by {_where(known)} and {_where(obj)}")
            self._entries[name] = obj
            try:
                obj.registry_name = name  # type: ignore[attr-defined]
            except (AttributeError, TypeError):
                pass
            return obj

        return decorate

    def load(self) -> None:
        """Import the built-in components, and the plugins the environment names."""
        if self._loaded:
            return
        self._loaded = True
        if self.package is not None:
            discover(self.package)
        load_environment_plugins()

    def get(self, name: str, path: str = "") -> T:
        self.load()
        if name not in self._entries:
            raise SpecError(path or self.kind, f"unknown {self.kind} '{name}'; {one_of(name, self._entries)}")
        return self._entries[name]

    def names(self) -> list[str]:
        self.load()
        return sorted(self._entries)

    def items(self) -> list[tuple[str, T]]:
        return [(name, self._entries[name]) for name in self.names()]

    def __contains__(self, name: object) -> bool:
        self.load()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


def _where(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


# ---------------------------------------------------------------- plugins

PLUGIN_VARIABLE = "LEARNSCOPE_PLUGINS"
ENTRY_POINT_GROUP = "learnscope.plugins"
_plugins: dict[str, str] = {}  # what was asked for -> the module it loaded as
_environment_loaded = False


def loaded_plugins() -> list[str]:
    """The plugins loaded so far, as they were asked for (files and modules),
    for a worker process to load the same."""
    return list(_plugins)


def load_plugin(target: str) -> str:
    """Import a plugin: a module name (`mylab.probes`) or a Python file
    (`path/to/components.py`). Its components register with the same
    decorators as the built-in ones. Loading the same plugin again does nothing.
    Returns the module's name."""
    target = target.strip()
    if not target:
        raise LearnscopeError("plugin: empty name; give a module name or a .py file")
    is_file = target.endswith(".py") or os.sep in target or Path(target).is_file()
    key = str(Path(target).resolve()) if is_file else target
    if key in _plugins:
        return _plugins[key]
    _load_builtins()  # a plugin may build on built-in components, and must not shadow them
    if is_file:
        path = Path(target)
        if not path.is_file():
            raise LearnscopeError(f"plugin: no such file: {target}")
        name = f"learnscope_plugin_{path.stem}_{hashlib.sha1(key.encode()).hexdigest()[:8]}"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise LearnscopeError(f"plugin: cannot load {target} as Python")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        _run_plugin(target, lambda: spec.loader.exec_module(module))  # type: ignore[union-attr]
    else:
        name = target
        if not _module_exists(target):
            raise LearnscopeError(f"plugin: no module named '{target}' (give an importable module or a .py file)")
        _run_plugin(target, lambda: importlib.import_module(target))
    _plugins[key] = name
    return name


def _module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def _run_plugin(target: str, load: Callable[[], object]) -> None:
    try:
        load()
    except LearnscopeError:
        raise
    except Exception as exc:  # the plugin's own bug: one line naming it, not our traceback
        raise LearnscopeError(f"plugin {target} failed to import: {exc.__class__.__name__}: {exc}") from None


def load_environment_plugins() -> None:
    """The plugins of `$LEARNSCOPE_PLUGINS` (separated by the path separator)
    and of installed packages' `learnscope.plugins` entry points, once."""
    global _environment_loaded
    if _environment_loaded:
        return
    _environment_loaded = True
    for target in os.environ.get(PLUGIN_VARIABLE, "").split(os.pathsep):
        if target.strip():
            load_plugin(target)
    for point in entry_points(group=ENTRY_POINT_GROUP):
        load_plugin(point.value.split(":", 1)[0])


def _load_builtins() -> None:
    for registry in (tasks, models, probes, interventions, phenomena):
        if not registry._loaded and registry.package is not None:
            registry._loaded = True
            discover(registry.package)


tasks: Registry = Registry("task", "learnscope.tasks")
models: Registry = Registry("model", "learnscope.models")
probes: Registry = Registry("probe", "learnscope.probes")
interventions: Registry = Registry("intervention", "learnscope.interventions")
phenomena: Registry = Registry("phenomenon", "learnscope.catalog")
backends: Registry = Registry("sweep backend", "learnscope.sweep.backends")
