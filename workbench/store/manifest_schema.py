"""The manifest's schema in depth: every field a reader uses, with its JSON type and range.

A manifest is written by the workbench, but a run directory is a plain directory anyone can edit, copy
or corrupt. Everything that reads manifests (listing, `show`, the app, figures, analyses) relies on
this check: a manifest that passes it can be projected, formatted and compared without a type error,
and one that fails it is listed as corrupt with the reason, leaving every other run readable.

    problem = manifest_problem(data)   # None, or "summary.accuracy_after must be a number, got 'x'"

Keys a reader never uses may hold any JSON value, so runs from newer workbenches with extra fields
still read. The spec is a handful of small node types (`Fields`, `MapOf`, `ListOf`, `Int`, `Number`,
`Text`, `Maybe`, `Either`), so a new field is one line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

INT64_MAX = 2**63 - 1
STATUSES = ("running", "completed", "failed", "interrupted")
PID_MAX = 2**31 - 1  # Linux allows at most 2**22; any larger pid cannot be a process


@dataclass(frozen=True)
class Int:
    """A JSON integer (not a boolean) in [lo, hi]."""

    lo: int = -INT64_MAX - 1
    hi: int = INT64_MAX

    def problem(self, value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int):
            return f"must be an integer, got {_show(value)}"
        if not self.lo <= value <= self.hi:
            return f"must be in [{self.lo}, {self.hi}], got {_show(value)}"
        return None


@dataclass(frozen=True)
class Number:
    """A JSON number (not a boolean); NaN stands for "not measured" and is allowed, infinity is not."""

    lo: float = -math.inf

    def problem(self, value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"must be a number, got {_show(value)}"
        if isinstance(value, float) and math.isnan(value):
            return None
        if not math.isfinite(value) or abs(value) > 1e300 or value < self.lo:
            return f"must be a finite number >= {self.lo}, got {_show(value)}"
        return None


@dataclass(frozen=True)
class Text:
    """A JSON string, optionally one of `choices` or an ISO 8601 time."""

    choices: tuple[str, ...] = ()
    iso_time: bool = False

    def problem(self, value: Any) -> str | None:
        if not isinstance(value, str):
            return f"must be a string, got {_show(value)}"
        if self.choices and value not in self.choices:
            return f"must be one of {', '.join(self.choices)}, got {_show(value)}"
        if self.iso_time:
            try:
                datetime.fromisoformat(value)
            except ValueError:
                return f"must be an ISO 8601 time, got {_show(value)}"
        return None


@dataclass(frozen=True)
class Bool:
    def problem(self, value: Any) -> str | None:
        return None if isinstance(value, bool) else f"must be true or false, got {_show(value)}"


@dataclass(frozen=True)
class AnyJSON:
    def problem(self, value: Any) -> str | None:
        return None


@dataclass(frozen=True)
class Maybe:
    """`spec` or null."""

    spec: Any

    def problem(self, value: Any) -> str | None:
        return None if value is None else self.spec.problem(value)


@dataclass(frozen=True)
class Either:
    """One of several specs (the first one's message when none fits)."""

    specs: tuple[Any, ...]

    def problem(self, value: Any) -> str | None:
        problems = [s.problem(value) for s in self.specs]
        return None if None in problems else problems[0]


@dataclass(frozen=True)
class ListOf:
    item: Any
    length: int | None = None

    def problem(self, value: Any) -> str | None:
        if not isinstance(value, list):
            return f"must be a list, got {_show(value)}"
        if self.length is not None and len(value) != self.length:
            return f"must hold {self.length} items, got {len(value)}"
        for i, item in enumerate(value):
            if (p := self.item.problem(item)) is not None:
                return _at(f"[{i}]", p)
        return None


@dataclass(frozen=True)
class MapOf:
    """A JSON object whose values all fit `value`."""

    value: Any

    def problem(self, value: Any) -> str | None:
        if not isinstance(value, dict):
            return f"must be an object, got {_show(value)}"
        for key, item in value.items():
            if (p := self.value.problem(item)) is not None:
                return _at(f".{key}", p)
        return None


@dataclass(frozen=True)
class Fields:
    """A JSON object with known keys (each optional unless `required`); other keys may hold anything."""

    known: dict[str, Any]
    required: tuple[str, ...] = field(default=())

    def problem(self, value: Any) -> str | None:
        if not isinstance(value, dict):
            return f"must be an object, got {_show(value)}"
        missing = [k for k in self.required if k not in value]
        if missing:
            return f"missing keys {', '.join(missing)}"
        for key, spec in self.known.items():
            if key in value and (p := spec.problem(value[key])) is not None:
                return _at(f".{key}", p)
        return None


def _at(where: str, problem: str) -> str:
    """Prefix a nested problem with where it is: ".train" + ".seed must ..." -> ".train.seed must ..."."""
    return f"{where}{problem}" if problem[:1] in ".[" else f"{where} {problem}"


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


COUNT = Int(0)
NUMBER = Number()
BYTES = MapOf(Maybe(NUMBER))  # category -> bytes
SCALAR = Either((Maybe(Text()), NUMBER, Bool()))

TRAIN = Fields(
    {
        **dict.fromkeys(
            ("steps", "batch_size", "grad_accum", "max_length", "eval_every", "eval_examples"), COUNT
        ),
        **dict.fromkeys(("eval_batch_size", "flush_every"), COUNT),
        "seed": Int(),
        "train_examples": Maybe(COUNT),
        "lr": Maybe(NUMBER),
        **dict.fromkeys(("weight_decay", "warmup_ratio", "max_grad_norm"), NUMBER),
        **dict.fromkeys(("eval_metric", "device", "dtype", "attn"), Text()),
        "max_new_tokens": Either((COUNT, Text())),
        **dict.fromkeys(("gradient_checkpointing", "save_weights"), Bool()),
    }
)

CONFIG = Fields(
    {
        **dict.fromkeys(("model", "task", "method", "template", "kind"), Text()),
        **dict.fromkeys(("name", "runs_dir"), Maybe(Text())),
        "train": TRAIN,
        "record": MapOf(SCALAR),
        "method_options": MapOf(AnyJSON()),
        "configs": MapOf(AnyJSON()),  # a timing pass: label -> the configuration it timed
    }
)

SUMMARY = Fields(
    {
        **dict.fromkeys(
            (
                "accuracy_before",
                "accuracy_after",
                "accuracy_best",
                "answer_loglik_per_token_before",
                "answer_loglik_per_token_after",
                "median_step_seconds",
                "lr",
                "final_loss",
            ),
            Maybe(NUMBER),
        ),
        **dict.fromkeys(("accuracy_before_ci", "accuracy_after_ci"), Maybe(ListOf(Maybe(NUMBER), 2))),
        **dict.fromkeys(
            ("eval_examples_scored", "trainable_parameters", "total_parameters", "steps_recorded"),
            Maybe(COUNT),
        ),
        "max_new_tokens": Maybe(COUNT),
        **dict.fromkeys(("eval_metric",), Text()),
        **dict.fromkeys(
            ("memory_note", "fidelity_note", "saliency_note", "saliency_source", "profile_note"),
            Maybe(Text()),
        ),
        "memory_peak_bytes": BYTES,
        "memory_phase_peak_bytes": MapOf(Either((BYTES, Maybe(NUMBER)))),  # early runs: phase -> bytes
        **dict.fromkeys(("fidelity_first", "fidelity_last"), Maybe(MapOf(Maybe(NUMBER)))),
        "method_resolved": Maybe(MapOf(AnyJSON())),
    }
)

ENVIRONMENT = Fields(
    {
        **dict.fromkeys(("python", "platform", "torch", "device"), Maybe(Text())),
        "inputs": Maybe(MapOf(Maybe(Text()))),
    }
)

MANIFEST_SCHEMA = Fields(
    {
        "schema_version": Int(),
        "id": Text(),
        "name": Text(),
        "created": Text(iso_time=True),
        "finished": Maybe(Text(iso_time=True)),
        "status": Text(choices=STATUSES),
        "status_message": Maybe(Text()),
        "pid": Int(0, PID_MAX),
        "process_start": Maybe(COUNT),  # the writer process's start time (clock ticks since boot)
        "hostname": Text(),
        "config": CONFIG,
        "environment": ENVIRONMENT,
        "summary": SUMMARY,
    },
    required=(
        "schema_version",
        "id",
        "name",
        "created",
        "status",
        "pid",
        "hostname",
        "status_message",
        "config",
        "environment",
        "summary",
    ),
)


def manifest_problem(data: Any) -> str | None:
    """What is wrong with a manifest, as "<field> <problem>", or None when every field fits its spec."""
    problem = MANIFEST_SCHEMA.problem(data)
    if problem is None:
        return None
    if problem.startswith("."):  # ".summary.accuracy_after must be ..." -> "summary.accuracy_after ..."
        return problem[1:]
    return problem
