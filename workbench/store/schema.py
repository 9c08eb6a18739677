"""What a run directory holds on disk: table schemas, manifest keys and the rules for run ids.

Everything the writer, reader and index agree on lives here, so the format is defined once:

    <runs_dir>/<run_id>/manifest.json              run metadata (see MANIFEST_KEYS), rewritten atomically
    <runs_dir>/<run_id>/<table>/part-NNNNN.parquet  immutable long-format parts, one per flush (rank k > 0
                                                   of a data-parallel run: from k * RANK_PART_STRIDE)
    <runs_dir>/<run_id>/<name>.safetensors         tensors (selections, masks, adapters)
    <runs_dir>/<run_id>/<name>.json                small side files

Adding a table is one entry in `TABLES`. A field that is not nullable is required on write; a nullable
field may be left out and is filled with null. Two rules ride on field metadata so that they stay inside
that one entry: `choices` (the allowed strings of a categorical column) and `fill` (the value that
replaces a missing or null entry).

Layer convention: `layer` is never null on disk. Rows about the whole model (or not about one block,
such as the LM head or optimizer state) carry `NO_LAYER` (-1); leaving `layer` out means the same. The
sentinel keeps the column a plain int64 in pandas (nulls would turn it into float).
"""

from __future__ import annotations

import json
import re
from typing import Any

import pyarrow as pa

from workbench.errors import StoreError
from workbench.store.manifest_schema import STATUSES as STATUSES  # re-exported
from workbench.store.manifest_schema import manifest_problem

DEFAULT_RUNS_DIR = "runs"  # the run store when none is named (CLI, API, app, RunConfig.runs_dir)
SCHEMA_VERSION = 1  # bump when the manifest or a table changes incompatibly; readers refuse other versions
MANIFEST = "manifest.json"
FINAL_STATUSES = ("completed", "failed", "interrupted")
NO_LAYER = -1  # `layer` of whole-model rows
MEMORY_SOURCES = ("logical", "allocator", "device")


class SchemaError(StoreError, ValueError):
    """Rows do not fit a table's schema (unknown table or column, wrong type, bad category)."""


# ---- table schemas ----------------------------------------------------------------------------------


def _req(name: str, type_: pa.DataType) -> pa.Field:
    """A required column: must be given on write and holds no nulls."""
    return pa.field(name, type_, nullable=False)


def _opt(name: str, type_: pa.DataType) -> pa.Field:
    """An optional column: may be left out (filled with null)."""
    return pa.field(name, type_, nullable=True)


def _choice(name: str, *choices: str, required: bool = True) -> pa.Field:
    """A string column restricted to `choices` (null allowed only when not required)."""
    return pa.field(name, pa.string(), nullable=not required, metadata={"choices": json.dumps(choices)})


# Shared columns, defined once so every table means the same by them.
STEP = _req("step", pa.int64())  # optimizer step (0-based); selection phases use the step they precede
LAYER = pa.field("layer", pa.int64(), nullable=False, metadata={"fill": json.dumps(NO_LAYER)})
MODULE = _opt("module", pa.string())  # e.g. "self_attn.q_proj", "mlp.down_proj", "lm_head"
SCORE = _req("score", pa.float64())
# the process that measured the row in a data-parallel run (orchestration/distributed.py); 0 otherwise
RANK = pa.field("rank", pa.int64(), nullable=False, metadata={"fill": json.dumps(0)})
RANK_TABLES = ("memory", "grads", "timing")  # the tables every rank of a data-parallel run writes
RANK_PART_STRIDE = 10_000_000  # rank k > 0 numbers its part files from k * RANK_PART_STRIDE
SELECTED = _opt("selected", pa.bool_())

TABLES: dict[str, pa.Schema] = {
    # scalar curves: loss, accuracy, learning rate ... per split ("train", "eval")
    "metrics": pa.schema(
        [STEP, _opt("split", pa.string()), _req("name", pa.string()), _req("value", pa.float64())]
    ),
    # memory by category (activations, parameters, gradients, optimizer ...) from one of three sources
    "memory": pa.schema(
        [
            STEP,
            LAYER,
            MODULE,
            _req("category", pa.string()),
            _req("bytes", pa.int64()),
            _choice("source", *MEMORY_SOURCES),
            _opt("phase", pa.string()),  # "train", "warmup", "importance", "eval"
            RANK,
        ]
    ),
    # gradient statistics per module: "median", "mean", "max" (of |g|), "norm" ...
    "grads": pa.schema(
        [
            STEP,
            LAYER,
            MODULE,
            _req("stat", pa.string()),
            _req("value", pa.float64()),
            _opt("phase", pa.string()),  # "train", or "warmup" (SMT's warm-up statistics, step 0)
            RANK,
        ]
    ),
    # token saliency (SAGE / TokenTune): one row per (sample, layer, position)
    "saliency": pa.schema(
        [
            STEP,
            _req("sample", pa.int64()),
            LAYER,
            _req("position", pa.int64()),
            _opt("token", pa.string()),
            SCORE,
            SELECTED,
        ]
    ),
    # block-grid allocation (SMT): one row per block of a target matrix
    "blocks": pa.schema(
        [STEP, LAYER, MODULE, _req("row_block", pa.int64()), _req("col_block", pa.int64()), SCORE, SELECTED]
    ),
    # row selection (SPSFT): one row per output row of a target matrix
    "rows": pa.schema([STEP, LAYER, MODULE, _req("row", pa.int64()), SCORE, SELECTED]),
    # gradient fidelity (recorders/fidelity.py): stat cosine | rel_error (approximate gradients vs a
    # dense reference pass), coverage | oracle_coverage (SMT blocks, SPSFT rows: share of the dense
    # gradient's squared norm), jaccard (selection drift); layer -1 / module "model": the whole model
    "fidelity": pa.schema([STEP, LAYER, MODULE, _req("stat", pa.string()), _req("value", pa.float64())]),
    # per-example scoring of each evaluation: paired tests of two runs scored on the same examples
    "predictions": pa.schema(
        [
            STEP,
            _req("example", pa.int64()),  # index in the run's eval split
            _opt("label", pa.int64()),  # the gold candidate (eval metric loglik)
            _opt("predicted", pa.int64()),  # the candidate with the highest answer log-likelihood (loglik)
            _opt("generated", pa.string()),  # the greedy answer (exact_match), cut at its first newline
            _req("correct", pa.bool_()),
        ]
    ),
    # wall time of phases ("forward", "backward", "optimizer", "step", "warmup" ...)
    "timing": pa.schema([STEP, _req("phase", pa.string()), _req("seconds", pa.float64()), RANK]),
    # memory sweeps over sequence length x batch size; bytes is null where the point ran out of memory
    "sweep": pa.schema(
        [
            _req("method", pa.string()),
            _req("length", pa.int64()),
            _req("batch_size", pa.int64()),
            _choice("status", "ok", "oom"),
            _opt("bytes", pa.int64()),
            _choice("source", *MEMORY_SOURCES, required=False),
            _opt("category", pa.string()),
        ]
    ),
}


def table_schema(table: str) -> pa.Schema:
    """The schema of `table`, or SchemaError naming the tables that exist."""
    try:
        return TABLES[table]
    except KeyError:
        raise SchemaError(f"unknown table {table!r}; tables: {', '.join(TABLES)}") from None


def field_choices(field: pa.Field) -> tuple[str, ...] | None:
    """The allowed values of a categorical column, or None when any value goes."""
    raw = (field.metadata or {}).get(b"choices")
    return tuple(json.loads(raw)) if raw else None


def field_fill(field: pa.Field) -> Any:
    """The value that stands in for a missing or null entry of this column (None: no fill)."""
    raw = (field.metadata or {}).get(b"fill")
    return json.loads(raw) if raw else None


# ---- manifest ---------------------------------------------------------------------------------------


def validate_manifest(data: Any, where: str) -> dict[str, Any]:
    """Return `data` if it is a manifest this version can read (every field checked in depth against
    `manifest_schema.MANIFEST_SCHEMA`), else StoreError naming `where` and the first field that is wrong."""
    if not isinstance(data, dict):
        raise StoreError(
            f"corrupt run manifest in {where}: expected a JSON object, got {type(data).__name__}"
        )
    version = data.get("schema_version")
    if version is not None and version != SCHEMA_VERSION:
        newer = isinstance(version, int) and not isinstance(version, bool) and version > SCHEMA_VERSION
        hint = " (written by a newer workbench)" if newer else ""
        raise StoreError(
            f"run manifest in {where} has schema_version {repr(version)[:40]}{hint}; "
            f"this workbench reads {SCHEMA_VERSION}"
        )
    problem = manifest_problem(data)
    if problem is not None:
        raise StoreError(f"corrupt run manifest in {where}: {problem}")
    return data


# ---- run ids ----------------------------------------------------------------------------------------

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
MAX_ID_LENGTH = 120


def slug(text: str, max_length: int = 48) -> str:
    """A short file-name-safe form of a run name: unsafe characters become '-', never empty."""
    out = _UNSAFE.sub("-", text.strip()).strip("-.")[:max_length].strip("-.")
    return out or "run"


def sanitize_run_id(raw: str) -> str:
    """Make `raw` a safe run id: only [A-Za-z0-9._-], no separators, no leading dot or dash.

    Unsafe characters (path separators included) become '-', so "../evil" becomes "evil" and can never
    name a directory outside the runs dir. StoreError if nothing usable is left.

    >>> sanitize_run_id("a/b c")
    'a-b-c'
    """
    if not isinstance(raw, str):
        raise StoreError(f"run id must be a string, got {type(raw).__name__}")
    out = _UNSAFE.sub("-", raw).lstrip(".-")[:MAX_ID_LENGTH].rstrip("-")
    # "." and ".." are gone through lstrip; an id made only of dots/dashes leaves nothing
    if not out:
        raise StoreError(f"invalid run id {raw!r}: use letters, digits, '.', '_' or '-'")
    return out


def is_valid_run_id(text: str) -> bool:
    """True when `text` is already a sanitized run id (what a run directory may be called)."""
    try:
        return sanitize_run_id(text) == text
    except StoreError:
        return False


def check_file_name(name: str, kind: str) -> str:
    """Validate the base name of a side file (tensors, JSON): same rules as run ids, no rewriting."""
    if not is_valid_run_id(name):
        raise StoreError(
            f"invalid {kind} name {name!r}: use letters, digits, '.', '_' or '-' (no leading dot)"
        )
    return name
