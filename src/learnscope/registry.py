"""Registries: a new component is one class and one decorator.

Each component kind (task, model, probe, intervention, phenomenon) has one
Registry. Components of the four spec kinds are pydantic models whose fields
are their parameters; `name` in a spec picks the class.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from learnscope.errors import SpecError, one_of

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorate(obj: T) -> T:
            if name in self._entries and self._entries[name] is not obj:
                raise RuntimeError(f"{self.kind} '{name}' is registered twice")
            self._entries[name] = obj
            try:
                obj.registry_name = name  # type: ignore[attr-defined]
            except (AttributeError, TypeError):
                pass
            return obj

        return decorate

    def get(self, name: str, path: str = "") -> T:
        if name not in self._entries:
            raise SpecError(path or self.kind, f"unknown {self.kind} '{name}'; {one_of(name, self._entries)}")
        return self._entries[name]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


tasks: Registry = Registry("task")
models: Registry = Registry("model")
probes: Registry = Registry("probe")
interventions: Registry = Registry("intervention")
phenomena: Registry = Registry("phenomenon")
