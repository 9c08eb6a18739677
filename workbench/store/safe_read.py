"""Bounded reads of run-store files: regular files only, no link leading out of the runs dir, a size cap.

A run directory is editable by anyone, so a reader must not be led anywhere by it: a `manifest.json`
that is a link to `/dev/zero` (an endless read), a FIFO (an open that never returns), a link to a file
elsewhere on the host, or a link loop each become one StoreError about that file, and every other run
still reads.

    real = checked_file(run_dir / "part-00000.parquet", runs_dir, MAX_PART_BYTES)
    text = read_text(run_dir / "manifest.json", runs_dir, MAX_MANIFEST_BYTES)
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from workbench.errors import StoreError

MAX_MANIFEST_BYTES = 16 * 2**20  # a manifest is a few KiB; a large summary is a few hundred
MAX_JSON_BYTES = 256 * 2**20  # JSON side files
MAX_PART_BYTES = 8 * 2**30  # one Parquet part or tensor file


def inside(path: Path, root: Path) -> Path:
    """The real path of `path` (links followed), or StoreError when it lies outside `root` or a link
    loops. FileNotFoundError passes through, for callers that treat a missing file on their own."""
    try:
        real = Path(os.path.realpath(path, strict=True))
        real_root = Path(os.path.realpath(root))
    except FileNotFoundError:
        raise
    except (OSError, RuntimeError) as err:  # ELOOP, a directory we may not enter
        raise StoreError(f"cannot follow {path}: {err}") from None
    if real != real_root and not real.is_relative_to(real_root):
        raise StoreError(f"{path} links to {real}, outside the runs dir {root}; links out are not followed")
    return real


def checked_file(path: Path, root: Path, limit: int) -> Path:
    """`path`'s real path once it is known to be a regular file inside `root` of at most `limit` bytes."""
    real = inside(path, root)
    info = real.stat()
    _check_stat(path, info, limit)
    return real


def _check_stat(path: Path, info: os.stat_result, limit: int) -> None:
    if not stat.S_ISREG(info.st_mode):
        raise StoreError(f"{path} is not a regular file (a device, FIFO or directory); it is not read")
    if info.st_size > limit:
        raise StoreError(f"{path} is {info.st_size:,} bytes, over the {limit:,}-byte limit for this file")


def read_bytes(path: Path, root: Path, limit: int) -> bytes:
    """The content of a regular file inside `root` of at most `limit` bytes (StoreError otherwise).

    Opened non-blocking, so a FIFO swapped in after the check cannot hang the reader."""
    real = inside(path, root)
    fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
    try:
        _check_stat(path, os.fstat(fd), limit)
        with os.fdopen(os.dup(fd), "rb") as fh:
            data = fh.read(limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise StoreError(f"{path} is over the {limit:,}-byte limit for this file")
    return data


def read_text(path: Path, root: Path, limit: int) -> str:
    """`read_bytes` decoded as UTF-8 (StoreError for other encodings)."""
    data = read_bytes(path, root, limit)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise StoreError(f"{path} is not UTF-8 text ({err.reason} at byte {err.start})") from None
