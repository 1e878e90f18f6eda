"""Registries of plugins by stable id: checks now; attacks, detectors, guards later."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from bastion.exceptions import ConfigError

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps stable ids (``DQ002``) and policy names (``completeness``) to plugin classes.

    Built-in plugins live in ``modules``, imported on first use so that ``import bastion``
    stays light. A new plugin is one module plus one ``@REGISTRY.register`` decorator.
    """

    def __init__(self, kind: str, modules: tuple[str, ...] = ()) -> None:
        self.kind = kind
        self._modules = modules
        self._loaded = False
        self._by_id: dict[str, type[T]] = {}

    def register(self, cls: type[T]) -> type[T]:
        plugin_id = getattr(cls, "id", None)
        if not isinstance(plugin_id, str) or not plugin_id:
            raise TypeError(f"{cls.__qualname__} has no string class attribute 'id'")
        if plugin_id in self._by_id and self._by_id[plugin_id] is not cls:
            raise ValueError(f"{self.kind} id {plugin_id} is registered twice")
        self._by_id[plugin_id] = cls
        return cls

    def _load(self) -> None:
        if not self._loaded:
            # marked first so that a plugin module importing the registry does not recurse;
            # unmarked again on failure so the next lookup retries and shows the real error
            self._loaded = True
            try:
                for module in self._modules:
                    importlib.import_module(module)
            except BaseException:
                self._loaded = False
                raise

    def get(self, plugin_id: str) -> type[T]:
        self._load()
        try:
            return self._by_id[plugin_id]
        except KeyError:
            known = ", ".join(sorted(self._by_id))
            raise ConfigError(f"unknown {self.kind} id {plugin_id!r}; known: {known}") from None

    def ids(self) -> list[str]:
        self._load()
        return sorted(self._by_id)

    def select(self, predicate: Callable[[type[T]], bool]) -> list[type[T]]:
        self._load()
        return [self._by_id[i] for i in sorted(self._by_id) if predicate(self._by_id[i])]

    def __iter__(self) -> Iterator[type[T]]:
        self._load()
        return iter([self._by_id[i] for i in sorted(self._by_id)])

    def __len__(self) -> int:
        self._load()
        return len(self._by_id)

    def __contains__(self, plugin_id: object) -> bool:
        self._load()
        return plugin_id in self._by_id
