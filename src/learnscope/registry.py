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


# ---------------------------------------------------------------- the catalog, unimported

def catalog_listing() -> list[tuple[str, str, str]]:
    """(name, summary, source) of every phenomenon, sorted by name: what
    `learnscope list` prints.

    Importing the catalog loads torch, pandas and the rest of the package
    (about 2 s) for three strings per phenomenon. Where only the built-in
    catalog can register phenomena (no plugin loaded or named by the
    environment or an entry point) they are read from the catalog's source
    files instead: every `@registry.phenomena.register("name")` class whose
    body sets `summary` and `source` to string literals. Any other form, a
    file that does not parse, or a plugin anywhere: the registry is asked
    (tests/test_cli_imports.py holds the two equal)."""
    quick = None if (phenomena._loaded or _plugins or os.environ.get(PLUGIN_VARIABLE, "").strip()
                     or entry_points(group=ENTRY_POINT_GROUP)) else _read_catalog()
    if quick is not None:
        return quick
    return [(name, cls.summary, cls.source) for name, cls in phenomena.items()]


def _read_catalog() -> list[tuple[str, str, str]] | None:
    import ast

    spec = importlib.util.find_spec("learnscope.catalog")
    if spec is None or not spec.submodule_search_locations:
        return None
    found: dict[str, tuple[str, str]] = {}
    for info in pkgutil.iter_modules(spec.submodule_search_locations):
        path = Path(spec.submodule_search_locations[0]) / f"{info.name}.py"
        try:
            text = path.read_text(encoding="utf-8")
            tree = ast.parse(text) if "phenomena.register" in text else None
        except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
            return None
        if tree is None:
            continue
        seen = 0
        for node in ast.walk(tree):
            if not isinstance(node, ast.ClassDef):
                continue
            for decorator in node.decorator_list:
                name = _registered_name(decorator)
                if name is None:
                    continue
                values = {t.id: v.value for v in node.body if isinstance(v, ast.Assign)
                          for t in v.targets if isinstance(t, ast.Name)}
                texts = {key: _literal(values.get(key)) for key in ("summary", "source")}
                if None in texts.values() or name in found:
                    return None
                found[name] = (texts["summary"], texts["source"])  # type: ignore[assignment]
                seen += 1
        calls = sum(isinstance(node, ast.Call) and _is_register(node.func) for node in ast.walk(tree))
        if seen != calls:  # registered some other way: ask the registry
            return None
    return [(name, *found[name]) for name in sorted(found)]


def _is_register(func: Any) -> bool:
    """`phenomena.register` (as `registry.phenomena.register` or otherwise qualified)."""
    import ast

    return (isinstance(func, ast.Attribute) and func.attr == "register"
            and ((isinstance(func.value, ast.Attribute) and func.value.attr == "phenomena")
                 or (isinstance(func.value, ast.Name) and func.value.id == "phenomena")))


def _registered_name(decorator: Any) -> str | None:
    import ast

    if (isinstance(decorator, ast.Call) and _is_register(decorator.func) and len(decorator.args) == 1
            and not decorator.keywords and isinstance(decorator.args[0], ast.Constant)
            and isinstance(decorator.args[0].value, str)):
        return decorator.args[0].value
    return None


def _literal(node: Any) -> str | None:
    import ast

    if node is None:
        return None
    try:
        value = ast.literal_eval(node)
    except ValueError:
        return None
    return value if isinstance(value, str) else None
