"""Read one run directory: manifest, live status, tables, tensors and JSON side files.

    run = RunReader("runs/20250131-120000-sage-boolq")
    run.status                      # "running", "completed", "failed" or "interrupted"
    loss = run.table("metrics")     # pandas DataFrame, all parts in order
    masks = run.tensors("selection")

Only JSON, Parquet and safetensors are ever read; nothing is unpickled or executed. Parquet parts are
cast to the known table schema with their metadata dropped, so pandas metadata stored in a file (index
restoration, extension types) never runs.
"""

from __future__ import annotations

import functools
import json
import os
import re
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from workbench.errors import StoreError
from workbench.store.manifest_schema import PID_MAX
from workbench.store.safe_read import (
    MAX_JSON_BYTES,
    MAX_MANIFEST_BYTES,
    MAX_PART_BYTES,
    checked_file,
    read_text,
)
from workbench.store.schema import (
    MANIFEST,
    TABLES,
    check_file_name,
    field_choices,
    field_fill,
    table_schema,
    validate_manifest,
)

if TYPE_CHECKING:
    import pandas as pd
    import torch

_PART = re.compile(r"part-(\d+)\.parquet")


def read_manifest(run_dir: Path, root: Path | None = None) -> dict[str, Any]:
    """The validated manifest of `run_dir`, or StoreError naming the directory and the problem.

    `root` is the runs dir the manifest may not lead out of (default: the run dir's parent); the read
    is bounded (`safe_read`)."""
    path = run_dir / MANIFEST
    try:
        text = read_text(path, root or run_dir.absolute().parent, MAX_MANIFEST_BYTES)
    except FileNotFoundError:
        what = "does not exist" if not run_dir.exists() else "is not a run directory (no manifest.json)"
        raise StoreError(f"{run_dir} {what}") from None
    except OSError as err:
        raise StoreError(f"cannot read run manifest in {run_dir}: {err}") from err
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise StoreError(f"corrupt run manifest in {run_dir}: not JSON ({err})") from None
    except RecursionError:
        raise StoreError(f"corrupt run manifest in {run_dir}: JSON nested too deeply") from None
    return validate_manifest(data, str(run_dir))


def process_start(pid: int) -> int | None:
    """When process `pid` started (clock ticks since boot, Linux /proc), or None when unknown: with the
    pid it names one process, so a dead run's pid reused by another process is not taken for it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def pid_alive(pid: int, started: int | None = None) -> bool:
    """Whether process `pid` exists on this host (one of another user counts) and, when `started` (its
    `process_start`) is known, is the process that started then. A zombie counts as gone (it will never
    write again); a pid that cannot be a process is dead. Used for runs and for sweep claims."""
    if not isinstance(pid, int) or isinstance(pid, bool) or not 0 < pid <= PID_MAX:
        return False
    if os.name == "nt":  # os.kill would terminate it: never declare a Windows process dead
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        pass
    except OSError:
        return True  # cannot tell; do not declare a live process dead
    try:  # Linux: a killed but unreaped child still answers kill(0)
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    except (OSError, IndexError):
        return True
    return started is None or process_start(pid) in (None, started)


DEAD_RUN_MESSAGE = (
    "the run's process ended without recording a final status (killed with SIGKILL, out of memory, "
    "or its run store stopped taking writes: a full disk or a read-only mount)"
)


def part_files(table_dir: Path) -> list[Path]:
    """The part files of one table, in part-number order (temp files and strays ignored)."""
    if not table_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in table_dir.iterdir() if (m := _PART.fullmatch(p.name))]
    return [p for _, p in sorted(found)]


def _read_part(path: Path, schema: pa.Schema, root: Path) -> pa.Table:
    """One part file conformed to `schema`: metadata dropped, old parts' missing optional columns null
    (or their fill value: `rank` 0);
    required columns without nulls and categorical columns within their choices, or StoreError."""
    try:
        raw = pq.read_table(checked_file(path, root, MAX_PART_BYTES))
    except (pa.ArrowException, OSError) as err:
        raise StoreError(f"corrupt part file {path}: {err}") from err
    columns = []
    for field in schema:
        if field.name in raw.column_names:
            try:
                column = raw.column(field.name).cast(field.type)
            except (pa.ArrowException, TypeError) as err:
                raise StoreError(f"corrupt part file {path}: column {field.name!r}: {err}") from err
            _check_column(path, field, column)
            columns.append(column)
        elif field.nullable:
            columns.append(pa.nulls(raw.num_rows, type=field.type))
        elif field_fill(field) is not None:  # a column added since (rank): its fill value
            columns.append(pa.repeat(pa.scalar(field_fill(field), type=field.type), raw.num_rows))
        else:
            raise StoreError(f"corrupt part file {path}: required column {field.name!r} is missing")
    # a fresh table from bare arrays carries no schema metadata, so no pandas metadata survives
    return pa.Table.from_arrays(columns, schema=schema.remove_metadata())


def _check_column(path: Path, field: pa.Field, column: pa.ChunkedArray) -> None:
    """A required column holds no nulls; a categorical one only its choices (and null where allowed)."""
    if not field.nullable and column.null_count and field_fill(field) is None:
        raise StoreError(f"corrupt part file {path}: required column {field.name!r} holds nulls")
    choices = field_choices(field)
    if choices:
        bad = set(column.drop_null().unique().to_pylist()) - set(choices)
        if bad:
            shown = ", ".join(sorted(map(repr, bad))[:3])
            raise StoreError(
                f"corrupt part file {path}: column {field.name!r} holds {shown}; "
                f"allowed: {', '.join(choices)}"
            )


class RunReader:
    """A read-only view of one run directory. Cheap to make: only the manifest is read."""

    def __init__(self, run_dir: str | os.PathLike[str], root: str | os.PathLike[str] | None = None) -> None:
        """`root`: the runs dir no file of the run may link out of (default: the run dir's parent)."""
        self.path = Path(run_dir)
        self.root = Path(root) if root is not None else self.path.absolute().parent
        self.manifest: dict[str, Any] = read_manifest(self.path, self.root)

    def refresh(self) -> RunReader:
        """Re-read the manifest (a live run updates status and summary); returns self."""
        self.manifest = read_manifest(self.path, self.root)
        return self

    # -- manifest fields -----------------------------------------------------------------------------

    @property
    def id(self) -> str:
        """The run directory's name: what `resolve_run` opens (a copied or renamed run keeps its old id
        in the manifest, `manifest_id`)."""
        return self.path.absolute().name or self.manifest["id"]

    @property
    def manifest_id(self) -> str:
        return self.manifest["id"]

    @property
    def name(self) -> str:
        return self.manifest["name"]

    @property
    def created(self) -> str:
        return self.manifest["created"]

    @property
    def config(self) -> dict[str, Any]:
        return self.manifest["config"]

    @property
    def environment(self) -> dict[str, Any]:
        return self.manifest["environment"]

    @property
    def summary(self) -> dict[str, Any]:
        return self.manifest["summary"]

    @property
    def status_message(self) -> str | None:
        """Why the run stopped; for a run whose process died without saying so, that it did."""
        message = self.manifest["status_message"]
        if message is None and self.manifest["status"] == "running" and self.status == "interrupted":
            return DEAD_RUN_MESSAGE
        return message

    @property
    def status(self) -> str:
        """The recorded status, except that a "running" run whose process is gone reads "interrupted".

        Only checked on the host that wrote the run; elsewhere the pid means nothing, so it stays running.
        """
        status = self.manifest["status"]
        if (
            status == "running"
            and self.manifest["hostname"] == _hostname()
            and not pid_alive(self.manifest["pid"], self.manifest.get("process_start"))
        ):
            return "interrupted"
        return status

    # -- tables --------------------------------------------------------------------------------------

    def table_names(self) -> list[str]:
        """The known tables that have at least one part file."""
        return [t for t in TABLES if part_files(self.path / t)]

    def arrow(self, table: str) -> pa.Table:
        """All parts of `table` concatenated in part order, with the table's exact Arrow schema."""
        schema = table_schema(table).remove_metadata()
        parts = [_read_part(p, schema, self.root) for p in part_files(self.path / table)]
        if not parts:
            return schema.empty_table()
        return pa.concat_tables(parts) if len(parts) > 1 else parts[0]

    def table(self, table: str) -> pd.DataFrame:
        """`table` as a pandas DataFrame (empty, with the right columns, when nothing was written).

        Integer columns holding nulls (sweep.bytes) come back as float with NaN, as pandas does by default.
        """
        return self.arrow(table).to_pandas()

    # -- side files ----------------------------------------------------------------------------------

    def _side_names(self, suffix: str) -> list[str]:
        return sorted(
            p.name[: -len(suffix)] for p in self.path.glob(f"*{suffix}") if not p.name.startswith(".")
        )

    def tensor_names(self) -> list[str]:
        return self._side_names(".safetensors")

    def json_names(self) -> list[str]:
        return [n for n in self._side_names(".json") if n != MANIFEST[: -len(".json")]]

    def _side_file(self, name: str, suffix: str, kind: str, available: list[str]) -> Path:
        path = self.path / f"{check_file_name(name, kind)}{suffix}"
        if not path.is_file():
            shown = ", ".join(available) or "none"
            raise StoreError(f"run {self.id} has no {kind} {name!r}; available: {shown}")
        return path

    def tensors(self, name: str) -> dict[str, torch.Tensor]:
        """The tensors saved as `<name>.safetensors` (loaded on CPU)."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        path = self._side_file(name, ".safetensors", "tensors", self.tensor_names())
        try:
            return load_file(str(checked_file(path, self.root, MAX_PART_BYTES)))
        except (SafetensorError, OSError, ValueError) as err:
            raise StoreError(f"corrupt tensor file {path}: {err}") from err

    def json(self, name: str) -> Any:
        """The content of the side file `<name>.json`."""
        path = self._side_file(name, ".json", "JSON file", self.json_names())
        try:
            return json.loads(read_text(path, self.root, MAX_JSON_BYTES))
        except (OSError, json.JSONDecodeError, RecursionError) as err:
            raise StoreError(f"corrupt JSON file {path}: {err}") from err

    def __repr__(self) -> str:
        return f"RunReader({str(self.path)!r}, status={self.status!r})"


@functools.cache
def _hostname() -> str:
    """This host's name, looked up once (listing many runs asks for it per run)."""
    return socket.gethostname()
