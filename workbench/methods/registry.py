"""The method registry: method packages are discovered, each registers its class with `register_method`.

Adding a method means adding one folder `workbench/methods/<name>/` whose `__init__.py` imports a class
decorated with `@register_method`; nothing else lists it. The CLI, run tables, the app and the generic
tests read the methods from here. Packages in the directories of the `WORKBENCH_METHOD_PATH`
environment variable (separated like PATH) are discovered too, as if they sat in `workbench/methods/`:
a way to try a method without touching the installed package.

    @register_method
    class MyMethod(MethodDefaults):
        name = "mine"
        ...                      # the metadata and the Method contract (workbench/methods/base.py)

    METHODS.names()              # ['full', 'lora', ..., 'mine']
    build_method("mine", method_options_class("mine")())

A leaf module for the rest of the package: it imports no method; discovery imports the method packages
at the first lookup.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys
import typing
from typing import Any

from workbench.methods import base
from workbench.models.anatomy import LLAMA_LAYOUT
from workbench.registry import Registry
from workbench.validation import Validated

METHOD_PATH_VARIABLE = "WORKBENCH_METHOD_PATH"


def _discover() -> None:
    """Import every subpackage of workbench.methods (and of WORKBENCH_METHOD_PATH's directories)."""
    package = sys.modules[__package__]  # workbench.methods, imported before this submodule
    extra = [d for d in os.environ.get(METHOD_PATH_VARIABLE, "").split(os.pathsep) if d]
    for directory in extra:
        if directory not in package.__path__:
            package.__path__.append(directory)
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if info.ispkg:
            importlib.import_module(f"{package.__name__}.{info.name}")


METHODS: Registry[type[base.Method]] = Registry("method", discover=_discover)

# Metadata every method class declares (see base.Method), checked when it registers.
_METADATA: dict[str, type | tuple[type, ...]] = {
    "name": str,
    "default_lr": float,
    "options_class": type,
    "table_options": tuple,
    "color": str,
    "tiny_options": dict,
}


def register_method(cls: type[Any]) -> type[Any]:
    """Class decorator: check the method's metadata and register it under `cls.name`."""
    missing = [key for key in _METADATA if not hasattr(cls, key)]
    if missing:
        raise TypeError(
            f"method class {cls.__name__} lacks {', '.join(missing)} (see workbench.methods.base)"
        )
    wrong = [key for key, kind in _METADATA.items() if not isinstance(getattr(cls, key), kind)]
    if wrong:
        raise TypeError(f"method class {cls.__name__}: wrong type for {', '.join(wrong)}")
    options = cls.options_class
    if not (issubclass(options, Validated) and hasattr(options, "__dataclass_fields__")):
        raise TypeError(f"{cls.__name__}.options_class must be a Validated dataclass")
    unknown_features = [f for f in base.requirements(cls) if f not in LLAMA_LAYOUT]
    if not isinstance(base.requirements(cls), tuple) or unknown_features:
        raise TypeError(f"{cls.__name__}.requires must be a tuple of {', '.join(LLAMA_LAYOUT)}")
    kind = base.gradient_kind(cls)
    if kind is not None and kind not in base.GRADIENT_KINDS:
        raise TypeError(
            f"{cls.__name__}.gradient must be one of {', '.join(base.GRADIENT_KINDS)}, got {kind!r}"
        )
    fields = typing.get_type_hints(options)
    unknown = [key for key in (*cls.table_options, *cls.tiny_options) if key not in fields]
    if unknown:
        raise TypeError(f"{cls.__name__} names options its options class lacks: {', '.join(unknown)}")
    return METHODS.register(cls.name)(cls)


def method_class(name: str) -> type[base.Method]:
    """The registered class of method `name` (ConfigError listing the methods if unknown)."""
    return METHODS.get(name)


def method_options_class(name: str) -> type:
    """The options dataclass of method `name` (ConfigError if the method is unknown)."""
    return METHODS.get(name).options_class


def build_method(name: str, options: Any) -> base.Method:
    """Instantiate method `name` with its (validated) options dataclass."""
    return METHODS.get(name)(options)
