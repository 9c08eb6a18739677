"""Append-only writer of one run: manifest, buffered Parquet tables, tensors and JSON side files.

    env = environment_info("cuda")
    with RunWriter.create("runs", name="sage-boolq", config=cfg, environment=env) as run:
        run.add("metrics", {"step": 3, "split": "train", "name": "loss", "value": 0.71})
        run.flush()  # one immutable part file per non-empty table
        run.update_summary(best_accuracy=0.8)
    # leaving the block: "completed"; an exception: "failed"; Ctrl-C: "interrupted" (then re-raised)

Every file is written to a hidden temporary name in its own directory, fsynced and renamed into place,
so a reader never sees half a file and a crash loses at most the rows added since the last flush.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import platform
import socket
import subprocess
import tempfile
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from workbench.errors import StoreError
from workbench.store.reader import process_start
from workbench.store.rows import RowBuffer, Rows
from workbench.store.schema import (
    FINAL_STATUSES,
    MANIFEST,
    RANK_PART_STRIDE,
    RANK_TABLES,
    SCHEMA_VERSION,
    check_file_name,
    sanitize_run_id,
    slug,
)

if TYPE_CHECKING:
    import torch

# A table whose buffer reaches this many rows is flushed right away, bounding the writer's memory on
# long runs whose caller flushes rarely.
AUTO_FLUSH_ROWS = 1_000_000


# ---- atomic files -----------------------------------------------------------------------------------


def _fsync_dir(directory: Path) -> None:
    """Make a rename in `directory` durable; best effort (some filesystems refuse directory fds)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Create or replace `path` all at once: `write(tmp)` fills a temp file that is fsynced and renamed.

    The temp name starts with a dot, so listings and part globs never pick it up; on any failure it is
    removed and the error becomes a StoreError naming `path`. The file gets the mode the umask gives a
    new file (0644 under the usual 022), not the temp file's private 0600, so a shared runs dir is
    readable by whom the umask says.
    """
    tmp: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        tmp = Path(name)
        os.chmod(tmp, 0o666 & ~_umask())
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
        _fsync_dir(path.parent)
    except (OSError, pa.ArrowException) as err:
        raise StoreError(f"cannot write run store at {path}: {err}") from err
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                tmp.unlink()


def _json_default(obj: Any) -> Any:
    """Let numpy / torch scalars, paths and dataclasses into JSON; anything else is a caller bug."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):  # a config object
        return dataclasses.asdict(obj)
    if hasattr(obj, "item") and getattr(obj, "ndim", None) == 0:  # 0-d torch tensor
        return obj.item()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def dump_json(obj: Any, where: str) -> str:
    """`obj` as indented JSON text, or StoreError naming `where` when it cannot be encoded."""
    try:
        return json.dumps(obj, indent=2, default=_json_default) + "\n"
    except (TypeError, ValueError) as err:
        raise StoreError(f"cannot write {where}: {err}") from err


def write_json_atomic(path: Path, obj: Any) -> None:
    text = dump_json(obj, str(path))
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


# ---- environment ------------------------------------------------------------------------------------


def _version(package: str) -> str | None:
    # importlib.metadata, not import: importing transformers costs seconds
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def checkout_commit(root: Path | None = None) -> dict[str, Any] | None:
    """{"commit", "dirty"} of the git checkout the workbench runs from (`root`: that checkout, by
    default the directory above the package); None when it is not a checkout or git is missing."""
    root = root or Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None

    def git(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)

    try:
        head, status = git("rev-parse", "HEAD"), git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    if head.returncode != 0:
        return None
    return {"commit": head.stdout.strip(), "dirty": bool(status.stdout.strip())}


def environment_info(device: Any) -> dict[str, Any]:
    """The `environment` block of a manifest for a run on `device` ("cpu", "cuda", "cuda:1", torch.device)."""
    import torch  # deferred: the store is imported by the app, which mostly never needs torch

    dev = torch.device(device)
    gpu = None
    if dev.type == "cuda" and torch.cuda.is_available():
        gpu = torch.cuda.get_device_name(dev)
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "transformers": _version("transformers"),
        "peft": _version("peft"),
        "workbench": _version("workbench"),
        "workbench_checkout": checkout_commit(),  # commit (and uncommitted changes) when run from git
        "cuda": torch.version.cuda,
        "device": str(dev),
        "gpu": gpu,
    }


# ---- the writer -------------------------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _prepare_runs_dir(runs_dir: Path) -> None:
    try:
        if runs_dir.is_file():
            raise StoreError(f"runs dir {runs_dir} is a file, not a directory")
        runs_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:  # e.g. a parent we may not enter
        raise StoreError(f"cannot write run store at {runs_dir}: {err}") from err
    if not os.access(runs_dir, os.W_OK | os.X_OK):
        raise StoreError(f"cannot write run store at {runs_dir}: directory is not writable")


def _claim_run_dir(runs_dir: Path, run_id: str, explicit: bool) -> Path:
    """Create the run's directory; mkdir is the atomic claim, so two writers never share an id."""
    for attempt in range(1, 1000):
        candidate = run_id if attempt == 1 else f"{run_id}-{attempt}"
        path = runs_dir / candidate
        try:
            path.mkdir()
            return path
        except FileExistsError:
            if explicit:
                raise StoreError(
                    f"run {candidate!r} already exists in {runs_dir}; choose another run id"
                ) from None
        except OSError as err:
            raise StoreError(f"cannot write run store at {path}: {err}") from err
    raise StoreError(f"cannot find a free run id for {run_id!r} in {runs_dir}")


class RunWriter:
    """Writes one run directory. Make one with `RunWriter.create`; finish it with `finish` or a `with`."""

    part_base = 0  # the first part number of this writer's range (RankWriter: its rank's)

    def __init__(self, path: Path, manifest: dict[str, Any]) -> None:
        self.path = path
        self._manifest = manifest
        self._buffers: dict[str, RowBuffer] = {}
        self._next_part: dict[str, int] = {}
        self._finished = False

    def _stamped(self, table: str, data: pa.Table) -> pa.Table:
        """The rows as they go to disk (RankWriter sets its rank)."""
        return data

    @classmethod
    def create(
        cls,
        runs_dir: str | os.PathLike[str],
        *,
        name: str,
        config: dict[str, Any],
        environment: dict[str, Any],
        run_id: str | None = None,
    ) -> RunWriter:
        """Create `<runs_dir>/<run_id>/` with a "running" manifest and return its writer.

        The id defaults to `YYYYmmdd-HHMMSS-<slug(name)>` (UTC) with "-2", "-3" ... appended if taken;
        an explicit `run_id` is sanitized and must be free.
        """
        runs_dir = Path(runs_dir)
        if not isinstance(config, dict) or not isinstance(environment, dict):
            raise StoreError("config and environment must be dicts")
        _prepare_runs_dir(runs_dir)
        created = _now()
        explicit = run_id is not None
        base = sanitize_run_id(run_id) if run_id is not None else f"{created:%Y%m%d-%H%M%S}-{slug(name)}"
        path = _claim_run_dir(runs_dir, base, explicit)
        manifest: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "id": path.name,
            "name": name,
            "created": created.isoformat(timespec="microseconds"),
            "finished": None,
            "status": "running",
            "status_message": None,
            "pid": os.getpid(),
            "process_start": process_start(os.getpid()),  # with the pid, names this process (pid reuse)
            "hostname": socket.gethostname(),
            "config": config,
            "environment": environment,
            "summary": {},
        }
        writer = cls(path, manifest)
        try:
            writer._write_manifest()
        except StoreError:
            with contextlib.suppress(OSError):
                path.rmdir()  # leave no manifest-less directory behind
            raise
        return writer

    # -- identity ------------------------------------------------------------------------------------

    @property
    def id(self) -> str:
        return self._manifest["id"]

    # train.py's names for id and path; same values
    @property
    def run_id(self) -> str:
        return self.id

    @property
    def run_dir(self) -> Path:
        return self.path

    @property
    def status(self) -> str:
        return self._manifest["status"]

    @property
    def summary(self) -> dict[str, Any]:
        """A copy of the summary as last written."""
        return self.manifest["summary"]

    @property
    def manifest(self) -> dict[str, Any]:
        """A copy of the manifest as last written."""
        return json.loads(json.dumps(self._manifest, default=_json_default))

    @property
    def finished(self) -> bool:
        return self._finished

    # -- tables --------------------------------------------------------------------------------------

    def add(self, table: str, rows: Rows) -> None:
        """Buffer rows for `table`: a dict (one row of scalars, or equal-length columns with scalars
        broadcast), a list of dicts, or a DataFrame. Checked now, so a bad row fails in the call that
        made it (and buffers nothing); written by the next flush."""
        self._check_open()
        buffer = self._buffers.get(table)
        if buffer is None:
            buffer = self._buffers[table] = RowBuffer(table)  # SchemaError for an unknown table
        buffer.add(rows)
        if buffer.num_rows >= AUTO_FLUSH_ROWS:
            self._flush_table(table)

    def buffered_rows(self, table: str) -> int:
        """Rows added to `table` and not yet flushed."""
        buffer = self._buffers.get(table)
        return buffer.num_rows if buffer else 0

    def flush(self) -> None:
        """Write one part file per table with buffered rows. On error the rows stay buffered."""
        for table in list(self._buffers):
            self._flush_table(table)

    def _flush_table(self, table: str) -> None:
        buffer = self._buffers.get(table)
        if buffer is None or buffer.num_rows == 0:
            return
        self._check_dir()
        data = self._stamped(table, buffer.to_table())
        directory = self.path / table
        number = self._next_part.get(table)
        if number is None:
            number = _next_part_number(directory, self.part_base)
        path = directory / f"part-{number:05d}.parquet"
        atomic_write(path, lambda tmp: pq.write_table(data, tmp))
        # only forget the rows once they are on disk, so a failed flush can be retried
        self._next_part[table] = number + 1
        del self._buffers[table]

    # -- side files ----------------------------------------------------------------------------------

    def add_tensors(
        self, name: str, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None
    ) -> Path:
        """Save tensors to `<run_dir>/<name>.safetensors` (replacing it) and return the path."""
        from safetensors.torch import save_file  # deferred: pulls in torch

        self._check_open()
        self._check_dir()
        path = self.path / f"{check_file_name(name, 'tensors')}.safetensors"
        prepared: dict[str, torch.Tensor] = {}
        storages: set[int] = set()
        for key, tensor in tensors.items():
            t = tensor.detach().cpu().contiguous()
            # safetensors refuses tensors that share storage (views, aliases): copy only those
            storage = t.untyped_storage()
            if t.numel() and (
                storage.data_ptr() in storages or storage.nbytes() != t.numel() * t.element_size()
            ):
                t = t.clone()
            storages.add(t.untyped_storage().data_ptr())
            prepared[str(key)] = t
        meta = dict(metadata) if metadata is not None else None

        def write(tmp: Path) -> None:
            from safetensors import SafetensorError

            try:
                save_file(prepared, str(tmp), metadata=meta)
            except SafetensorError as err:  # e.g. a full disk: reported like any failed write
                raise OSError(str(err)) from err

        atomic_write(path, write)
        return path

    def write_json(self, name: str, obj: Any) -> Path:
        """Save a small JSON side file `<run_dir>/<name>.json` (replacing it) and return the path."""
        self._check_open()
        if name == "manifest":
            raise StoreError("'manifest' is reserved; use update_summary for run-level results")
        path = self.path / f"{check_file_name(name, 'JSON file')}.json"
        self._check_dir()
        write_json_atomic(path, obj)
        return path

    # -- manifest ------------------------------------------------------------------------------------

    def update_summary(self, **values: Any) -> None:
        """Merge `values` into the manifest summary and rewrite the manifest."""
        dump_json(values, f"summary of run {self.id}")  # reject unencodable values before touching state
        self._manifest["summary"].update(values)
        self._write_manifest()

    def finish(self, status: str = "completed", message: str | None = None) -> None:
        """Flush what is buffered and record the final status ("completed", "failed", "interrupted").

        If the flush fails the run is recorded as "failed" with the error, and the error is raised.
        """
        if status not in FINAL_STATUSES:
            raise StoreError(f"final status must be one of {', '.join(FINAL_STATUSES)}, got {status!r}")
        self._check_open()
        try:
            self.flush()
        except StoreError as err:
            self._set_status("failed", f"{message + '; ' if message else ''}could not flush: {err}")
            raise
        self._set_status(status, message)

    def _set_status(self, status: str, message: str | None) -> None:
        self._finished = True
        self._manifest["status"] = status
        self._manifest["status_message"] = message
        self._manifest["finished"] = _now().isoformat(timespec="microseconds")
        self._write_manifest()

    def _write_manifest(self) -> None:
        self._check_dir()
        write_json_atomic(self.path / MANIFEST, self._manifest)

    def _check_dir(self) -> None:
        """StoreError when the run directory is gone: a deleted run is never silently recreated."""
        if not self.path.is_dir():
            raise StoreError(f"the run directory {self.path} disappeared while the run was writing to it")

    def _check_open(self) -> None:
        if self._finished:
            raise StoreError(f"run {self.id} is already finished ({self._manifest['status']})")

    # -- context manager -----------------------------------------------------------------------------

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._finished:
            return
        if exc is None:
            self.finish("completed")
            return
        # Ctrl-C and SystemExit stop a healthy run; any other exception is a failure
        self.end_with(exc, "failed" if isinstance(exc, Exception) else "interrupted")

    def end_with(self, exc: BaseException, status: str) -> None:
        """Record `status` ("failed" or "interrupted") with `exc` as the reason, while `exc` propagates:
        a store error here never hides it (the run is then left as it is, and no write is tried again)."""
        message = f"{type(exc).__name__}: {exc}".rstrip(": ")
        with contextlib.suppress(StoreError):
            self.finish(status, message)
        self._finished = True

    def __repr__(self) -> str:
        return f"RunWriter({str(self.path)!r}, status={self._manifest['status']!r})"


def _next_part_number(directory: Path, base: int = 0) -> int:
    """The first unused part number of a table directory in the range [base, base + RANK_PART_STRIDE)
    (`base` for a new table)."""
    if not directory.is_dir():
        return base
    numbers = [int(p.name[5:-8]) for p in directory.glob("part-*.parquet") if p.name[5:-8].isdigit()]
    return max((n for n in numbers if base <= n < base + RANK_PART_STRIDE), default=base - 1) + 1


class RankWriter(RunWriter):
    """Rank k > 0 of a data-parallel run writing its share into the run rank 0 created: the rows of
    RANK_TABLES (memory, grads, timing) with `rank` = k, in part files numbered from k *
    RANK_PART_STRIDE. Rank 0 owns everything else (manifest, metrics, predictions, tensors, summary):
    here rows of other tables are not kept, and summary, tensor and status calls write nothing."""

    def __init__(self, path: Path, rank: int) -> None:
        if rank < 1:
            raise StoreError(f"a RankWriter is for ranks >= 1 (rank 0 writes the run itself), got {rank}")
        if not (path / MANIFEST).is_file():
            raise StoreError(f"rank {rank} cannot join run {path}: it has no manifest (rank 0 creates it)")
        super().__init__(path, {"id": path.name, "status": "running", "summary": {}})
        self.rank = rank
        self.part_base = rank * RANK_PART_STRIDE

    def _stamped(self, table: str, data: pa.Table) -> pa.Table:
        index = data.schema.get_field_index("rank")
        column = pa.array(np.full(data.num_rows, self.rank, dtype=np.int64))
        return data.set_column(index, data.schema.field(index), column)

    def add(self, table: str, rows: Rows) -> None:
        if table in RANK_TABLES:
            super().add(table, rows)

    def update_summary(self, **values: Any) -> None:
        pass

    def add_tensors(self, name: str, tensors: Mapping[str, torch.Tensor], metadata: Any = None) -> Path:
        return self.path / f"{name}.safetensors"

    def write_json(self, name: str, obj: Any) -> Path:
        return self.path / f"{name}.json"

    def _write_manifest(self) -> None:
        self._check_dir()  # rank 0 writes the manifest; a vanished run dir still stops this rank
