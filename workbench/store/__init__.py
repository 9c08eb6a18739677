"""The run store: one local directory per run, append-only, readable while it is being written.

Write with `RunWriter.create(...)`, read with `RunReader(path)` / `resolve_run(runs_dir, ref)`, browse
with `list_runs(runs_dir)`, one row per run with `summary.runs_frame` / `summary.run_records`. The
on-disk format (tables, manifest keys, id rules, the default runs dir) is defined in `schema`.
"""

from workbench.store.index import RunEntry, list_runs, resolve_run
from workbench.store.reader import RunReader
from workbench.store.schema import (
    DEFAULT_RUNS_DIR,
    NO_LAYER,
    SCHEMA_VERSION,
    STATUSES,
    TABLES,
    SchemaError,
    is_valid_run_id,
    sanitize_run_id,
)
from workbench.store.writer import RankWriter, RunWriter, environment_info

__all__ = [
    "DEFAULT_RUNS_DIR",
    "NO_LAYER",
    "SCHEMA_VERSION",
    "STATUSES",
    "TABLES",
    "RunEntry",
    "RunReader",
    "RankWriter",
    "RunWriter",
    "SchemaError",
    "environment_info",
    "is_valid_run_id",
    "list_runs",
    "resolve_run",
    "sanitize_run_id",
]
