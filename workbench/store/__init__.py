"""The run store: one local directory per run, append-only, readable while it is being written.

Write with `RunWriter.create(...)`, read with `RunReader(path)` / `open_run(runs_dir, ref)`, browse with
`list_runs(runs_dir)`. The on-disk format (tables, manifest keys, id rules) is defined in `schema`.
"""

from workbench.store.index import RunEntry, list_runs, open_run
from workbench.store.reader import RunReader
from workbench.store.schema import (
    NO_LAYER,
    SCHEMA_VERSION,
    STATUSES,
    TABLES,
    SchemaError,
    is_valid_run_id,
    sanitize_run_id,
)
from workbench.store.writer import RunWriter, environment_info

__all__ = [
    "NO_LAYER",
    "SCHEMA_VERSION",
    "STATUSES",
    "TABLES",
    "RunEntry",
    "RunReader",
    "RunWriter",
    "SchemaError",
    "environment_info",
    "is_valid_run_id",
    "list_runs",
    "open_run",
    "sanitize_run_id",
]
