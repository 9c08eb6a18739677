"""Claims: at most one process works on a given unit of work (a sweep point) in a runs dir at a time.

Several sweep processes may share one runs dir (two terminals, a job array, a later Ray engine). Before
a process runs a point it claims the point's run key:

    with claimed(runs_dir, key) as claim:
        if claim is None:                    # another live process holds it: skip, report claim_owner()
            ...
        else:                                # ours until the block ends (completed, failed or interrupted)
            ...

A claim is the file `<runs_dir>/.claims/<key>.lock`, created with `os.open(O_CREAT | O_EXCL)`: of any
number of processes that try at once exactly one creates it (local file systems; NFS v3 and later).
It holds JSON {host, pid, process_start, started, token} and is unlinked by its owner when the block
ends. The directory starts with a dot, so run listings (workbench.store) never see it.

A claim whose owner is gone is stale and is stolen: same host and its pid no longer alive (a crashed or
killed sweep; a zombie, or a pid since reused by a process that started at another time, counts as
gone: with the pid, `process_start` of workbench.store names one process). A claim of another host is
never stolen (its processes cannot be seen from here): after a crash there, delete its file by hand. A
claim file that cannot be read (its owner is between creating and writing it, or died there) counts as
stale only after `UNREADABLE_GRACE_S`. Stealing renames the stale file away first and checks that what
it moved is the stale claim it read (else it puts the fresh claim back), so two processes that find the
same stale claim do not both win.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from workbench.errors import StoreError
from workbench.store.reader import pid_alive, process_start

CLAIMS_DIR = ".claims"  # under the runs dir; hidden from run listings by its leading dot
UNREADABLE_GRACE_S = 60.0  # an unreadable claim file younger than this belongs to a process writing it
_KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")  # a key names one file in CLAIMS_DIR, nothing else


@dataclass(frozen=True)
class Claim:
    """A claim this process holds: its file and what it wrote there."""

    path: Path
    owner: dict[str, Any]  # {host, pid, process_start, started, token}

    def release(self) -> None:
        """Unlink the claim file if it is still this claim (never another process's claim)."""
        if read_owner(self.path) == self.owner:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()


def claim_path(runs_dir: str | os.PathLike[str], key: str) -> Path:
    """Where the claim of `key` lives: `<runs_dir>/.claims/<key>.lock`."""
    if not _KEY.fullmatch(key):
        raise ValueError(f"a claim key must be letters, digits, '_', '.' or '-', got {key!r}")
    return Path(runs_dir) / CLAIMS_DIR / f"{key}.lock"


def read_owner(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The JSON a claim file holds, or None if it is gone, empty or unreadable."""
    try:
        owner = json.loads(Path(path).read_bytes())
    except (OSError, ValueError):
        return None
    return owner if isinstance(owner, dict) else None


def claim_owner(runs_dir: str | os.PathLike[str], key: str) -> str:
    """Who holds the claim of `key`, for messages: "host h, pid 123, since 2025-01-01T10:00:00+00:00"."""
    owner = read_owner(claim_path(runs_dir, key))
    if owner is None:
        return "an unknown process"
    return f"host {owner.get('host')}, pid {owner.get('pid')}, since {owner.get('started')}"


def is_stale(owner: dict[str, Any] | None, age_s: float) -> bool:
    """Whether a claim can be stolen: its owner (None: unreadable) is a dead process on this host, or
    an unreadable claim is older than UNREADABLE_GRACE_S."""
    if owner is None or not isinstance(owner.get("pid"), int):
        return age_s > UNREADABLE_GRACE_S
    if owner.get("host") != socket.gethostname():
        return False
    started = owner.get("process_start")
    return not pid_alive(owner["pid"], started if isinstance(started, int) else None)


def try_claim(runs_dir: str | os.PathLike[str], key: str) -> Claim | None:
    """Claim `key` in `runs_dir`: the Claim, or None if a live process holds it. A stale claim is
    stolen (unlinked, then O_EXCL tried once more). A runs dir that cannot be written is a StoreError."""
    path = claim_path(runs_dir, key)
    owner = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "process_start": process_start(os.getpid()),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "token": uuid.uuid4().hex,
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        for attempt in (1, 2):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if attempt == 1 and _steal_if_stale(path):
                    continue
                return None
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    json.dump(owner, fh)
            except BaseException:
                with contextlib.suppress(OSError):
                    path.unlink()
                raise
            return Claim(path, owner)
    except OSError as exc:
        raise StoreError(f"cannot claim a sweep point in {str(runs_dir)!r}: {exc}") from None
    return None


@contextlib.contextmanager
def claimed(runs_dir: str | os.PathLike[str], key: str) -> Iterator[Claim | None]:
    """`try_claim` for the length of a block, released when it ends however it ends; None (nothing to
    release) if another live process holds the claim."""
    claim = try_claim(runs_dir, key)
    try:
        yield claim
    finally:
        if claim is not None:
            claim.release()


def _steal_if_stale(path: Path) -> bool:
    """Remove the claim at `path` if it is stale; True when the caller should try O_EXCL again."""
    try:
        data = path.read_bytes()
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return True  # released meanwhile
    try:
        owner = json.loads(data)
    except ValueError:
        owner = None
    if not is_stale(owner if isinstance(owner, dict) else None, age):
        return False
    moved = path.with_name(f".{path.name}.{uuid.uuid4().hex}.stale")
    try:
        os.rename(path, moved)
    except FileNotFoundError:
        return True  # another process stole or released it first
    try:
        if moved.read_bytes() != data:  # a fresh claim replaced the stale one meanwhile: put it back
            try:
                os.link(moved, path)
            except FileExistsError:
                pass  # yet another process claimed it: it holds the point
            except OSError:  # no hard links here
                if not path.exists():
                    os.rename(moved, path)
            return False
    finally:
        with contextlib.suppress(FileNotFoundError):
            moved.unlink()
    return True
