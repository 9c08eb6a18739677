"""Validated option dataclasses: type checks on construction, then range checks, one ConfigError each.

A leaf module (it imports only `workbench.errors`), so every options dataclass, the run config's and
each method's, can use it without importing the rest of the package.

    @dataclass
    class MyOptions(Validated):
        k: int = 4  # how many

        def validate(self) -> None:
            require(self.k >= 1, f"method.k must be >= 1, got {self.k}")

A class may declare other names for its fields, `aliases = {"lora_alpha": "alpha"}` (a ClassVar), which
`resolve_aliases` turns into the field's name wherever options are built from a dict (TOML tables,
`--set`, keyword arguments: `workbench.config._build`).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, ClassVar

from workbench.errors import ConfigError


def _check_types(obj: Any) -> None:
    """Raise ConfigError if a dataclass field holds a value of the wrong type (an int passes as float)."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        expected = hints[f.name]
        if not _matches(value, expected):
            raise ConfigError(
                f"{type(obj).__name__}.{f.name} must be {_type_name(expected)}, got {shown(value)} "
                f"({type(value).__name__})"
            )


def shown(value: Any, width: int = 60) -> str:
    """repr(value) cut to `width` characters, so a huge value still gives a one-line message."""
    try:
        text = repr(value)
    except ValueError:  # an int beyond Python's digit limit
        return "<too large to show>"
    return text if len(text) <= width else text[: width - 3] + "..."


def _matches(value: Any, expected: Any) -> bool:
    origin = typing.get_origin(expected)
    if expected is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in typing.get_args(expected))
    if origin is typing.Literal:
        return value in typing.get_args(expected)
    if expected is type(None):
        return value is None
    if origin in (list, tuple):
        return isinstance(value, (list, tuple))
    if origin is dict:
        return isinstance(value, dict)
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, expected)


def _type_name(expected: Any) -> str:
    """e.g. "int", "float or None", "int or one of 'auto'"."""
    origin = typing.get_origin(expected)
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(expected))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(arg) for arg in typing.get_args(expected))
    return getattr(expected, "__name__", str(expected)).replace("NoneType", "None")


class Validated:
    """Mixin: type-check fields, then run `validate()`; subclasses put range checks in `validate`."""

    # other names a dict may give a field by, alias -> field (e.g. peft's {"lora_alpha": "alpha"})
    aliases: ClassVar[dict[str, str]] = {}

    def __post_init__(self) -> None:
        _check_types(self)
        for f in dataclasses.fields(self):  # TOML gives floats for "1e-4" but ints for "1": normalise
            if typing.get_type_hints(type(self))[f.name] is float and isinstance(getattr(self, f.name), int):
                try:
                    object.__setattr__(self, f.name, float(getattr(self, f.name)))
                except OverflowError:
                    raise ConfigError(
                        f"{type(self).__name__}.{f.name} must be a finite number, got an integer too large "
                        "for a float"
                    ) from None
        self.validate()

    def validate(self) -> None:
        """Range checks; raise ConfigError with what is wrong and what is accepted."""


def require(condition: bool, message: str) -> None:
    """Raise ConfigError(message) unless condition holds."""
    if not condition:
        raise ConfigError(message)


def resolve_aliases(klass: type, values: dict[str, Any], section: str) -> dict[str, Any]:
    """`values` with every alias of `klass` (its `aliases`) renamed to its field; an alias given together
    with its field (or with another alias of it) is one ConfigError."""
    aliases = getattr(klass, "aliases", {})
    out: dict[str, Any] = {}
    given: dict[str, str] = {}  # field -> the key that set it
    for key, value in values.items():
        name = aliases.get(key, key)
        if name in given:
            raise ConfigError(
                f"{section}.{given[name]} and {section}.{key} both set {section}.{name} (aliases of one "
                "option): give only one"
            )
        given[name] = key
        out[name] = value
    return out
