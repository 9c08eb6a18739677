"""Fine-tuning methods, found through one registry.

Adding a method means adding its module here and decorating its class with `@METHODS.register(name)`;
the CLI, app and tests pick it up from the registry. Each method class has a `config_class`
(its options dataclass), a `name` and a `default_lr`.
"""

from __future__ import annotations

from typing import Any

from workbench.registry import Registry

METHODS: Registry[Any] = Registry("method")


def method_config_class(name: str) -> type:
    """The options dataclass of method `name` (ConfigError if the method is unknown)."""
    return METHODS.get(name).config_class


def build_method(name: str, options: Any) -> Any:
    """Instantiate method `name` with its (validated) options dataclass."""
    return METHODS.get(name)(options)


# Registration happens on import; keep this list in the order methods appear in docs and the app.
from workbench.methods import full, lora, sage, smt, spsft  # noqa: E402,F401
