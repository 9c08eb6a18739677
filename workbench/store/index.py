"""The runs directory as a whole: list runs (broken ones included, flagged) and resolve a run reference.

    for entry in list_runs("runs"):
        print(entry.id, entry.reader.status if entry.reader else entry.error)
    run = resolve_run("runs", "20250131")   # id, unique id prefix, "latest", or a path to a run dir

Listing reads manifests only, so it stays fast with many runs.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workbench.errors import StoreError
from workbench.store.reader import RunReader
from workbench.store.safe_read import inside
from workbench.store.schema import is_valid_run_id


@dataclass(frozen=True)
class RunEntry:
    """One directory of the runs dir: a readable run (`reader`) or a broken/foreign one (`error`).

    `id` is the directory name, which is what `resolve_run` resolves (a copied run may keep an old id in
    its manifest).
    """

    id: str
    path: Path
    reader: RunReader | None
    error: str | None

    @property
    def ok(self) -> bool:
        return self.reader is not None


def list_runs(runs_dir: str | os.PathLike[str]) -> list[RunEntry]:
    """Every run directory in `runs_dir`, oldest first; unreadable ones come last with their error.

    Hidden directories (temp files, `.cache`, sweep claims) and plain files are skipped. A missing runs
    dir is empty. One entry's problem (a corrupt manifest, a link out of the runs dir or in a loop, a
    FIFO) is that entry's `error`; it never stops the listing.
    """
    root = Path(check_path(runs_dir, "runs dir"))
    try:
        if root.is_file():
            raise StoreError(f"runs dir {root} is a file, not a directory")
        children = [e for e in os.scandir(root) if not e.name.startswith(".")]
    except FileNotFoundError:
        return []
    except OSError as err:
        raise StoreError(f"cannot list runs dir {root}: {err}") from err
    entries = []
    for child in children:
        path = Path(child.path)
        try:
            if child.is_symlink():
                inside(path, root)  # StoreError for a link out of the runs dir or a loop
            if not child.is_dir():
                continue
            entries.append(RunEntry(child.name, path, RunReader(path, root), None))
        except FileNotFoundError:
            continue  # removed while listing, or a dangling link
        except (StoreError, OSError) as err:
            entries.append(RunEntry(child.name, path, None, str(err)))
    return sorted(entries, key=lambda e: (e.reader is None, e.reader.created if e.reader else "", e.id))


def check_path(value: Any, what: str) -> str | os.PathLike[str]:
    """`value` if it is a non-empty path (str or os.PathLike), else StoreError naming `what`."""
    if not isinstance(value, (str, os.PathLike)):
        raise StoreError(f"{what} must be a path (a string or os.PathLike), got {type(value).__name__}")
    if not str(value).strip():
        raise StoreError(f"{what} must not be empty: name a directory, e.g. 'runs'")
    return value


def _looks_like_path(ref: str | os.PathLike[str]) -> bool:
    return isinstance(ref, os.PathLike) or os.sep in ref or "/" in ref or ref in (".", "..")


def resolve_run(
    runs_dir: str | os.PathLike[str], ref: str | os.PathLike[str], *, allow_path: bool = True
) -> RunReader:
    """The run `ref` names: an id in `runs_dir`, a unique id prefix, "latest" (the newest readable run),
    or, when `allow_path`, a path to a run directory (a Path, or a string with a separator, taken relative
    to the current directory and never joined onto `runs_dir`). Unknown or ambiguous -> StoreError.

    Pass `allow_path=False` for references from untrusted input (a URL parameter): then only ids of
    `runs_dir` resolve.
    """
    runs_dir = check_path(runs_dir, "runs dir")
    if not isinstance(ref, (str, os.PathLike)):
        raise StoreError(f"a run reference is a run id, an id prefix, 'latest' or a path; got {ref!r}")
    if _looks_like_path(ref):
        if not allow_path:
            raise StoreError(f"invalid run id {str(ref)!r}: expected a run id, not a path")
        path = Path(ref)
        if not path.is_dir():
            raise StoreError(f"no run directory at {path}")
        return RunReader(path)
    ref = str(ref)
    entries = list_runs(runs_dir)
    # a reference is only ever matched against the names listed in runs_dir (never joined onto it as a
    # path), so it cannot name a directory outside; names a new run could not get (spaces, non-ASCII,
    # a leading dash, over 120 characters: copied or renamed dirs) still open by their exact name
    exact = [e for e in entries if e.id == ref]
    if exact:
        return _open(exact[0])
    if is_valid_run_id(ref):
        if ref == "latest":
            readable = [e for e in entries if e.ok]
            if readable:
                return _open(readable[-1])
        matches = [e for e in entries if e.id.startswith(ref)]
        if len(matches) == 1:
            return _open(matches[0])
        if len(matches) > 1:
            shown = ", ".join(e.id for e in matches[:8])
            raise StoreError(f"run reference {ref!r} is ambiguous in {runs_dir}: matches {shown}")
    raise StoreError(_unknown_message(ref, runs_dir, [e.id for e in entries]))


def _open(entry: RunEntry) -> RunReader:
    if entry.reader is None:
        raise StoreError(entry.error or f"cannot read run {entry.path}")
    return entry.reader


def _unknown_message(ref: str, runs_dir: str | os.PathLike[str], ids: list[str]) -> str:
    if not ids:
        return f"unknown run {ref!r}: {runs_dir} has no runs"
    close = difflib.get_close_matches(ref, ids, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    recent = ids[-5:][::-1]
    more = f" (and {len(ids) - len(recent)} more)" if len(ids) > len(recent) else ""
    return f"unknown run {ref!r} in {runs_dir}.{hint} Recent runs: {', '.join(recent)}{more}"
