"""One generic registry with decorator registration and 'did you mean' errors."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from workbench.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to objects; `get` of an unknown name raises a ConfigError listing what exists.

    >>> METHODS = Registry("method")
    >>> @METHODS.register("full")
    ... class Full: ...
    """

    def __init__(self, kind: str, discover: Callable[[], None] | None = None) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        # called once before the first lookup, to import the modules that register (plug-in discovery)
        self._discover = discover

    def _discovered(self) -> dict[str, T]:
        if self._discover is not None:
            discover, self._discover = self._discover, None  # once, and not again from inside it
            try:
                discover()
            except BaseException:
                self._discover = discover
                raise
        return self._items

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = obj
            return obj

        return decorator

    def get(self, name: str) -> T:
        items = self._discovered()
        if name not in items:
            raise ConfigError(self.unknown_message(name))
        return items[name]

    def unknown_message(self, name: str) -> str:
        items = self._discovered()
        close = difflib.get_close_matches(name, items, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        return f"unknown {self.kind} {name!r}.{hint} Available: {', '.join(sorted(items))}."

    def names(self) -> list[str]:
        return sorted(self._discovered())

    def items(self) -> list[tuple[str, T]]:
        """(name, object) pairs sorted by name."""
        items = self._discovered()
        return [(name, items[name]) for name in sorted(items)]

    def __contains__(self, name: object) -> bool:
        return name in self._discovered()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
